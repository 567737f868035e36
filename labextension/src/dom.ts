/** The one DOM helper the views share. */

/** `<tag class=className>text children…</tag>`; pass `undefined` as text to give children only. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text?: string,
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  node.append(...children);
  return node;
}

/**
 * Append one labelled row to an `nb2prod-Form` grid: the label (text, or nodes such as a name plus its type
 * badge) pointing at `field`, then the field and anything shown after it (an error message, a datalist).
 */
export function formRow(
  grid: HTMLElement,
  label: string | (Node | string)[],
  field: HTMLElement,
  ...after: HTMLElement[]
): void {
  const labelNode =
    typeof label === 'string'
      ? el('label', 'nb2prod-Form-label', label)
      : el('label', 'nb2prod-Form-label', undefined, ...label);
  labelNode.htmlFor = field.id;
  grid.append(labelNode, el('div', 'nb2prod-Form-field', undefined, field, ...after));
}
