/** Typed parameter inputs: which input a spec type gets, and how its text becomes a JSON value. */

export type InputKind = 'integer' | 'number' | 'checkbox' | 'text' | 'json';

export function inputKind(type: string): InputKind {
  switch (type) {
    case 'int':
      return 'integer';
    case 'float':
      return 'number';
    case 'bool':
      return 'checkbox';
    case 'str':
      return 'text';
    default:
      return 'json';
  }
}

/** The text shown in an input for a default value. */
export function formatValue(kind: InputKind, value: unknown): string {
  if (kind === 'text') {
    return value === null || value === undefined ? '' : String(value);
  }
  if (kind === 'integer' || kind === 'number') {
    return value === null || value === undefined ? '' : String(value);
  }
  return JSON.stringify(value ?? null);
}

export interface IParsed {
  value?: unknown;
  error?: string;
}

/** Parse an input's text as the spec type wants it (mirrors the core's type checks). */
export function parseValue(type: string, raw: string | boolean): IParsed {
  const kind = inputKind(type);
  if (kind === 'checkbox') {
    return { value: Boolean(raw) };
  }
  const text = String(raw).trim();
  switch (kind) {
    case 'integer':
      if (!/^[+-]?\d+$/.test(text)) {
        return { error: 'must be an integer' };
      }
      return { value: Number(text) };
    case 'number': {
      const value = Number(text);
      if (text === '' || !Number.isFinite(value)) {
        return { error: 'must be a number' };
      }
      return { value };
    }
    case 'text':
      return { value: String(raw) };
    default: {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        if (type === 'any' || type === 'None') {
          return { value: String(raw) };
        }
        return { error: `must be JSON (${type})` };
      }
      if (type === 'list' && !Array.isArray(value)) {
        return { error: 'must be a JSON list' };
      }
      if (
        type === 'dict' &&
        (value === null || typeof value !== 'object' || Array.isArray(value))
      ) {
        return { error: 'must be a JSON object' };
      }
      return { value };
    }
  }
}

/** Whether two JSON values are equal (for "changed from its default"). */
export function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
