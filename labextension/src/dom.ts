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
