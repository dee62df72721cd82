// Tiny DOM helpers.
export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** h("tag.class", {attr: value, onclick: fn}, ...children): an element. */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) el.append(child);
  return el;
}

/** A keyboard-usable tab list: buttons with role=tab; arrows move, Enter/Space/click select. */
export function tabList(host, tabs, selected, onSelect) {
  host.replaceChildren(...tabs.map((tab, i) => h("button", {
    type: "button", role: "tab", id: tab.id, "aria-selected": String(i === selected), tabindex: i === selected ? "0" : "-1",
    onclick: () => onSelect(i),
    onkeydown: (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      const next = (i + step + tabs.length) % tabs.length;
      onSelect(next); host.children[next]?.focus();
    },
  }, tab.label)));
}

/** Render log lines (from index ``from``) into an <ol>, following the tail when asked. */
export function renderLines(ol, lines, from, follow) {
  if (from === 0) ol.replaceChildren();
  for (const line of lines.slice(from)) {
    ol.append(h("li", { "data-level": line.level, "data-line": line.n, "data-via": line.via, text: line.text }));
  }
  if (follow) ol.scrollTop = ol.scrollHeight;
}
