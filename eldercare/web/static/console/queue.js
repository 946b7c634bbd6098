/* The live queue: open alarms in the server's order, counters and the clock. */
import { $, h, raw, state, t, tr, trNode } from "./state.js";
import { ackTarget, renderConn } from "./live.js";
import { select } from "./detail.js";
import { renderAll } from "../console.js";

const TRIAGE_HOLD_S = 60; // eldercare.alerts.lifecycle.TRIAGE_HOLD_S

function triageKey(a) {
  if (a.status === "raised" && EC.ageSeconds(a.received_at) >= TRIAGE_HOLD_S) return 0;
  return a.triage_p_false ?? 0;
}

export function sorted() {
  return [...state.alarms.values()]
    .filter((a) => state.filterFacility === null || a.facility_id === state.filterFacility)
    .sort((a, b) => a.priority - b.priority
      // Triage orders only within a band (the server's queue_order): unscored = 0, and
      // an alarm unanswered for TRIAGE_HOLD_S ranks as genuine (no starving).
      || triageKey(a) - triageKey(b)
      || Date.parse(a.received_at) - Date.parse(b.received_at));
}

// The triage model's estimate and why (orders the queue within a band; never a priority).
export function triageNode(a) {
  if (a.triage_p_false === null || a.triage_p_false === undefined) return null;
  const why = (a.triage_reasons || []).map((r) => r.text).join("; ");
  return h("div", { class: "muted triage", "data-p-false": a.triage_p_false },
    `P(false alarm) ${Math.round(a.triage_p_false * 100)} % — ${why}`);
}

export function placeNodes(a) {
  const out = [];
  if (a.home_bed_id) {
    out.push(t("place.home_bed", { id: a.home_bed_id }));
    if (a.facility_name) out.push(" · ", raw(a.facility_name));
  } else {
    if (a.facility_name) out.push(raw(a.facility_name));
    if (a.room) out.push(" ", h("span", {}, t("place.room_label"), " ", raw(a.room)));
  }
  if (!out.length) out.push(t("common.none"));
  return out;
}

export function kindNodes(a) {
  const kinds = a.kinds && a.kinds.length ? a.kinds : [a.kind];
  const parts = [trNode("kind", kinds[0])];
  for (const k of kinds.slice(1)) parts.push(" + ", trNode("kind", k));
  if (a.occurrences > 1) parts.push(" ", h("span", { class: "badge" }, t("queue.times", { n: a.occurrences })));
  if (a.cancel_requested_at) parts.push(" ", h("span", { class: "badge warn" }, t("queue.cancel_requested")));
  return parts;
}

function holderNode(a) {
  const x = state.extras.get(a.id);
  if (x && x.holder) return h("span", {}, raw(x.holder), " ", h("span", { class: "muted small" }, tr("rkind", x.holder_kind)));
  if (a.acknowledged_by) return raw(a.acknowledged_by);
  return h("span", { class: "muted" }, t("queue.unheld"));
}

export function residentNode(a) {
  if (a.resident_name) return raw(a.resident_name);
  if (a.device_id) return h("span", { class: "muted" }, t("queue.device"), " ", raw(a.device_id));
  return h("span", { class: "muted" }, t("common.none"));
}

export function renderQueue() {
  const body = $("queue-body");
  const rows = sorted();
  body.replaceChildren(...rows.map((a) => h("tr", {
    class: `p${a.priority} st-${a.status}${a.id === state.selected ? " selected" : ""}`,
    dataset: { id: a.id, status: a.status },
    tabindex: "-1",
    onclick: () => select(a.id),
  },
  h("td", {}, h("span", { class: `prio p${a.priority}` }, tr("prio", a.priority))),
  h("td", { class: "kind" }, kindNodes(a)),
  h("td", {}, residentNode(a)),
  h("td", {}, placeNodes(a)),
  h("td", { class: "age", dataset: { since: a.received_at } }, EC.fmtAge(EC.ageSeconds(a.received_at))),
  h("td", {}, h("span", { class: `status st-${a.status}` }, tr("status", a.status))),
  h("td", {}, holderNode(a)))));
  $("queue-empty").hidden = rows.length > 0;
  const chip = $("queue-filter");
  if (state.filterFacility !== null) {
    const f = state.facilities.get(state.filterFacility);
    chip.hidden = false;
    chip.replaceChildren(t("queue.filtered"), " ", raw(f ? f.name : state.filterFacility), " ",
      h("button", { class: "ghost small", onclick: () => { state.filterFacility = null; renderAll(); } }, t("queue.clear_filter")));
  } else {
    chip.hidden = true;
  }
  renderCounters();
}

function renderCounters() {
  const all = [...state.alarms.values()];
  const unack = all.filter((a) => a.status === "raised");
  const ages = unack.map((a) => EC.ageSeconds(a.received_at));
  const oldest = ages.length ? Math.max(...ages) : null;
  const breaching = unack.filter((a, i) => ages[i] > ackTarget(a)).length;
  $("c-open").textContent = all.length;
  $("c-unack").textContent = unack.length;
  $("c-oldest").textContent = oldest === null ? "–" : EC.fmtAge(oldest);
  $("c-breach").textContent = breaching;
  $("c-unack-box").classList.toggle("alert", unack.length > 0);
  $("c-breach-box").classList.toggle("alert", breaching > 0);
  document.title = (unack.length ? `(${unack.length}) ` : "") + t("console.title");
}

export function tick() {
  document.querySelectorAll("[data-since]").forEach((el) => {
    el.textContent = EC.fmtAge(EC.ageSeconds(el.dataset.since));
  });
  renderCounters();
  renderConn();
}
