// Building the page's DOM without innerHTML: every text (device names come from the LAN and are untrusted) goes in
// as a text node, so nothing a device announces can become markup or script.

export type Child = Node | string | number | null | undefined | false;
type AttrValue = string | number | boolean | null | undefined | ((e: Event) => void);

/** An element with attributes (false/null/undefined: absent; true: present; functions: event listeners "onclick"). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, AttrValue> = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (k === 'value' && (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement)) el.value = String(v);
    else if (k === 'checked' && el instanceof HTMLInputElement) el.checked = v === true;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** A 24×24 monochrome icon from one path (drawn in the text colour; hidden from screen readers: text says it). */
export function icon(path: string): SVGSVGElement {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '24');
  svg.setAttribute('height', '24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', 'icon');
  const p = document.createElementNS(NS, 'path');
  p.setAttribute('d', path);
  p.setAttribute('fill', 'currentColor');
  p.setAttribute('fill-rule', 'evenodd');
  svg.appendChild(p);
  return svg;
}

export function append(parent: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replaces the children of `el`, keeping focus, caret and typed values of inputs that have an id (live updates). */
export function replaceKeepingFocus(el: Element, children: (Child | Child[])[]): void {
  const active = document.activeElement;
  const activeId = active && el.contains(active) ? active.id : '';
  const caret = active instanceof HTMLInputElement ? [active.selectionStart, active.selectionEnd] : null;
  const values = new Map<string, string | boolean>();
  for (const i of el.querySelectorAll<HTMLInputElement>('input[id]:not([readonly])')) {
    if (i.dataset['dirty'] === '1') values.set(i.id, i.type === 'checkbox' ? i.checked : i.value);
  }
  // What the person was told stays told: an error shown in the list, and the field it marks wrong, survive a live
  // update (a device found or paired elsewhere re-renders every card; a CI run saw "give it a name" vanish so).
  const alerts = new Map<string, string>();
  for (const a of el.querySelectorAll<HTMLElement>('[role="alert"][id]')) if (!a.hidden && a.textContent) alerts.set(a.id, a.textContent);
  const invalid = [...el.querySelectorAll<HTMLElement>('[aria-invalid="true"][id]')].map((x) => x.id);
  el.replaceChildren();
  append(el, children);
  for (const [id, text] of alerts) {
    const a = document.getElementById(id);
    if (!a || !el.contains(a) || !a.hidden) continue;
    a.textContent = text;
    a.hidden = false;
  }
  for (const id of invalid) {
    const x = document.getElementById(id);
    if (x && el.contains(x)) x.setAttribute('aria-invalid', 'true');
  }
  for (const [id, v] of values) {
    const i = document.getElementById(id);
    if (!(i instanceof HTMLInputElement) || !el.contains(i)) continue;
    if (typeof v === 'boolean') i.checked = v;
    else i.value = v;
    i.dataset['dirty'] = '1';
  }
  if (activeId) {
    const again = document.getElementById(activeId);
    if (again instanceof HTMLElement) {
      again.focus({ preventScroll: true });
      const [from, to] = caret ?? [null, null];
      if (again instanceof HTMLInputElement && again.type === 'text' && typeof from === 'number' && typeof to === 'number') again.setSelectionRange(from, to);
    }
  }
}

/** Marks inputs the person has typed into, so live re-renders keep their values. */
export function trackDirty(root: Document | Element): void {
  root.addEventListener('input', (e) => {
    if (!(e.target instanceof HTMLInputElement)) return;
    e.target.dataset['dirty'] = '1';
    // Typing into a field marked wrong is fixing it: stop calling it wrong.
    e.target.removeAttribute('aria-invalid');
  });
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

/** "1.5 kB", "3.2 MB": byte counts for people. */
export function bytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

export function when(isoTime: string | null): string {
  if (!isoTime) return 'never';
  const d = new Date(isoTime);
  return Number.isNaN(d.getTime()) ? isoTime : d.toLocaleString();
}

export function duration(s: number): string {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}
