/* Shift handover notes. */
import { $, api, h, raw, state, t, tr } from "./state.js";
import { kindNodes, residentNode, sorted } from "./queue.js";
import { select } from "./detail.js";

export function renderHandoverOpen() {
  const groups = new Map();
  for (const a of sorted()) {
    const x = state.extras.get(a.id);
    const holder = (x && x.holder) || a.acknowledged_by || "";
    if (!groups.has(holder)) groups.set(holder, []);
    groups.get(holder).push(a);
  }
  const box = $("handover-open");
  box.replaceChildren(h("h3", {}, t("handover.open", { n: state.alarms.size })),
    groups.size ? h("div", {}, [...groups.entries()].map(([holder, list]) => h("div", { class: "hgroup" },
      h("h4", {}, holder ? raw(holder) : t("handover.unheld"), ` (${list.length})`),
      h("ul", {}, list.map((a) => h("li", { class: "clickable", onclick: () => select(a.id) },
        h("span", { class: `prio p${a.priority}` }, tr("prio", a.priority)), " ", kindNodes(a), " · ", residentNode(a), " · ",
        tr("status", a.status), " · ", h("span", { dataset: { since: a.received_at } }, EC.fmtAge(EC.ageSeconds(a.received_at)))))))))
      : h("p", { class: "muted" }, t("queue.empty")));
}
export async function renderHandover() {
  renderHandoverOpen();
  try {
    const notes = await api("GET", "/api/console/handover");
    $("handover-notes").replaceChildren(...(notes.length ? notes.map((n) => h("li", {},
      h("div", { class: "muted small" }, EC.fmtTime(n.at), " · ", raw(n.author), " · ", t("handover.snapshot", { n: n.open_alarms.length })),
      h("div", { class: "note-text" }, raw(n.text)))) : [h("li", { class: "muted" }, t("handover.no_notes"))]));
  } catch (e) {
    if (e.status === 403) $("handover-notes").replaceChildren(h("li", { class: "muted" }, t("error.forbidden")));
    else EC.showError(e);
  }
}
