/* The alarm on screen: its actions (the server's allowed_actions), resident and device
 * cards, the audited reveal, dispatch and the timeline. */
import { $, api, h, raw, REVEAL_REASONS, state, t, tr, trNode } from "./state.js";
import { kindNodes, placeNodes, renderQueue, triageNode } from "./queue.js";
import { upsert } from "./live.js";
import { showTab } from "../console.js";

export function select(id) {
  if (state.selected !== id) state.revealed = null;
  state.selected = id;
  showTab("detail");
  renderQueue();
  const row = document.querySelector(`#queue-body tr[data-id="${id}"]`);
  if (row) row.scrollIntoView({ block: "nearest" });
  loadDetail();
}

export async function loadDetail() {
  const id = state.selected;
  if (!id) return;
  try {
    const [d, orders] = await Promise.all([
      api("GET", `/api/alarms/${id}`),
      ECOrders.forAlarm(id).catch(() => []),
    ]);
    if (state.selected !== id) return;
    state.detail = d;
    state.detailOrders = orders;
    upsert(d.alarm);
    renderQueue();
    renderDetail();
  } catch (e) {
    if (e.status === 404) { state.selected = null; state.detail = null; renderDetail(); }
    EC.showError(e);
  }
}

export async function act(action, body) {
  const id = state.selected;
  if (!id) return;
  try {
    const a = await api("POST", `/api/alarms/${id}/${action}`, body || {});
    upsert(a);
    renderQueue();
    EC.toast(t("toast.done", { action: tr("action", action.replace("-", "_")) }), "ok");
    await loadDetail();
  } catch (e) { EC.showError(e); }
}

function can(a, action) {
  const allowed = a.allowed_actions || [];
  // One server action, two buttons: the first dispatch, and sending more (escalate).
  if (action === "dispatch") return allowed.includes("dispatch") && a.status !== "dispatched";
  if (action === "escalate") return allowed.includes("dispatch") && a.status === "dispatched";
  return allowed.includes(action.replace("-", "_"));
}

function selectedResponders() {
  return [...document.querySelectorAll("#detail input[name=responder]:checked")].map((i) => Number(i.value));
}

export const ACTIONS = {
  acknowledge: () => act("acknowledge"),
  dispatch: () => {
    const ids = selectedResponders();
    return act("dispatch", ids.length ? { responder_ids: ids } : {});
  },
  escalate: () => {
    const ids = selectedResponders();
    return act("dispatch", ids.length ? { responder_ids: ids } : {});
  },
  "on-site": () => act("on-site"),
  resolve: () => act("resolve"),
  close: () => {
    const sel = document.getElementById("disposition");
    if (!sel || !sel.value) {
      if (sel) sel.focus();
      EC.toast(t("detail.choose_disposition"), "warn");
      return null;
    }
    const body = { disposition: sel.value };
    const item = document.getElementById("follow-up-item");
    if (sel.value === "service_request") {
      // The 12349 服务转介 path: the close creates the order for the service asked for.
      if (!item || !item.value) {
        if (item) item.focus();
        EC.toast(t("detail.choose_follow_up"), "warn");
        return null;
      }
      body.follow_up = { service_item_code: item.value };
    }
    return act("close", body);
  },
};

function section(titleKey, ...children) {
  return h("section", { class: "dsec" }, h("h3", {}, t(titleKey)), ...children);
}
function kv(rows) {
  return h("table", { class: "kv" }, rows.filter(Boolean).map(([k, v]) => h("tr", {}, h("th", {}, t(k)), h("td", {}, v))));
}
function orNone(v) { return v === null || v === undefined || v === "" ? h("span", { class: "muted" }, t("common.none")) : raw(v); }

export function renderDetail() {
  const d = state.detail;
  const box = $("detail");
  $("detail-empty").hidden = !!d;
  box.hidden = !d;
  if (!d) { box.replaceChildren(); return; }
  const a = d.alarm;
  const btn = (action, key, shortcut, cls) => h("button", {
    class: cls || "", "data-action": action, disabled: !can(a, action === "escalate" ? "escalate" : action),
    onclick: () => ACTIONS[action](), title: shortcut ? t("help.key", { key: shortcut }) : null,
  }, t(key), shortcut ? h("kbd", {}, shortcut) : null);

  const head = h("div", { class: `dhead p${a.priority}` },
    h("div", { class: "dtitle" }, h("span", { class: `prio p${a.priority}` }, tr("prio", a.priority)), " ",
      h("strong", {}, kindNodes(a)), " ", h("span", { class: `status st-${a.status}` }, tr("status", a.status))),
    h("div", { class: "muted" }, placeNodes(a), " · ", t("detail.received"), " ", EC.fmtTime(a.received_at), " · ",
      h("span", { dataset: { since: a.received_at } }, EC.fmtAge(EC.ageSeconds(a.received_at)))),
    triageNode(a));

  const followUp = h("select", { id: "follow-up-item", "aria-label": t("detail.follow_up"), hidden: true },
    h("option", { value: "" }, t("detail.follow_up_pick")),
    ECOrders.items.filter((i) => i.active).map((i) => h("option", { value: i.code, "data-raw": "" }, i.name_zh)));
  const dispSel = h("select", { id: "disposition", "aria-label": t("detail.disposition"),
    onchange: () => { followUp.hidden = dispSel.value !== "service_request"; } },
  h("option", { value: "" }, t("detail.disposition_pick")),
  state.meta.dispositions.map((x) => h("option", { value: x }, tr("disp", x))));
  const actions = h("div", { class: "actions" },
    btn("acknowledge", "act.acknowledge", "A", "primary"),
    btn("dispatch", "act.dispatch", "D", "primary"),
    btn("escalate", "act.escalate", "E"),
    btn("on-site", "act.on_site", "O"),
    btn("resolve", "act.resolve", "R"),
    h("span", { class: "close-group" }, dispSel, followUp, btn("close", "act.close", "C")),
    h("span", { class: "emergency" },
      ["120", "119"].map((svc) => h("button", {
        class: "danger", "data-action": `emergency-${svc}`, disabled: !can(a, "emergency"),
        onclick: () => act("emergency", { service: svc }),
      }, t(`act.call_${svc}`)))));

  const noteForm = h("form", { class: "note-form", onsubmit: (ev) => {
    ev.preventDefault();
    const ta = ev.target.querySelector("textarea");
    const text = ta.value.trim();
    if (!text) return;
    act("note", { text }).then(() => { ta.value = ""; });
  } }, h("textarea", { id: "note-text", rows: "2", maxlength: "2000", placeholder: t("detail.note_placeholder") }),
  h("button", { type: "submit", "data-action": "note" }, t("act.note"), h("kbd", {}, "N")));

  // Updates arrive while the operator types or picks: what they entered survives.
  const kept = box.dataset.alarm === a.id ? keepInputs(box) : null;
  box.replaceChildren(head, actions, noteForm,
    h("div", { class: "dgrid" }, residentCard(d), deviceCard(d)),
    dispatchSection(d), ordersSection(), timelineSection(d));
  box.dataset.alarm = a.id;
  if (kept) kept();
  followUp.hidden = dispSel.value !== "service_request";
}

// Follow-up work orders this alarm's close created, each a link into the work-order tab.
function ordersSection() {
  const list = state.detailOrders || [];
  if (!list.length) return h("span");
  return section("detail.orders", h("ul", { class: "events alarm-orders" }, list.map((o) => h("li", {
    class: "clickable", dataset: { order: o.id }, onclick: () => ECOrders.open(o.id),
  }, raw(o.number, "mono"), " ", raw(o.item_name || o.service_item_code), " ", ECOrders.woStatus(o.status),
  o.provider_name ? h("span", { class: "muted small" }, " · ", raw(o.provider_name)) : null))));
}

function keepInputs(box) {
  const values = {};
  for (const id of ["note-text", "disposition", "follow-up-item", "reveal-reason"]) {
    const el = box.querySelector(`#${id}`);
    if (el) values[id] = el.value;
  }
  const checked = [...box.querySelectorAll("input[name=responder]:checked")].map((i) => i.value);
  const focused = document.activeElement && box.contains(document.activeElement) ? document.activeElement.id : null;
  return () => {
    for (const [id, v] of Object.entries(values)) {
      const el = box.querySelector(`#${id}`);
      if (el && !el.disabled) el.value = v;
    }
    box.querySelectorAll("input[name=responder]").forEach((i) => { i.checked = checked.includes(i.value); });
    if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
  };
}

function residentCard(d) {
  const r = d.resident;
  if (!r) return section("detail.resident", h("p", { class: "muted" }, t("detail.no_resident")));
  const age = EC.yearsSince(r.birth_date);
  const rev = state.revealed && state.revealed.resident_id === r.id ? state.revealed.data : null;
  const rows = [
    ["res.age", age === null ? orNone(null) : t("res.years", { n: age })],
    ["res.gender", trNode("gender", r.gender)],
    ["res.ability", orNone(r.ability_level)],
    ["res.room", orNone(r.room)],
  ];
  let sensitive;
  if (rev) {
    sensitive = h("div", { class: "revealed" },
      h("p", { class: "small muted" }, t("reveal.audited")),
      kv([
        ["res.medical", orNone(rev.medical_notes)],
        ["res.allergies", orNone(rev.allergies)],
        ["res.address", orNone(rev.address)],
        ["res.access", orNone(rev.access_notes)],
        ["res.contacts", rev.contacts && rev.contacts.length
          ? h("ul", { class: "contacts" }, rev.contacts.map((c) => h("li", {}, raw(c.name), c.relation ? h("span", { class: "muted" }, " (", raw(c.relation), ")") : null, " ", raw(c.phone, "phone"))))
          : orNone(null)],
      ]));
  } else {
    const reason = h("select", { id: "reveal-reason", "aria-label": t("reveal.reason") },
      REVEAL_REASONS.map((k) => h("option", { value: k }, t(k))));
    sensitive = h("div", { class: "reveal-box" },
      h("p", { class: "small muted" }, t("reveal.explain")),
      h("div", { class: "row" }, reason, h("button", { "data-action": "reveal", onclick: () => reveal(r.id, reason.value) },
        t("reveal.button"), h("kbd", {}, "V"))));
  }
  return section("detail.resident",
    h("div", { class: "rcard" },
      h("div", { class: "photo", "aria-hidden": "true" }, photoSvg()),
      h("div", {}, h("div", { class: "rname" }, raw(r.name)), kv(rows))),
    sensitive);
}

function photoSvg() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 64 64");
  svg.innerHTML = '<rect width="64" height="64" rx="8" fill="#dfe6ee"/><circle cx="32" cy="24" r="12" fill="#a9b8c8"/><path d="M10 60c2-14 12-20 22-20s20 6 22 20z" fill="#a9b8c8"/>';
  return svg;
}

async function reveal(residentId, reasonKey) {
  try {
    const data = await api("POST", `/api/residents/${residentId}/reveal`,
      { reason: t(reasonKey), alarm_id: state.selected });
    state.revealed = { resident_id: residentId, data };
    renderDetail();
    loadDetail(); // the reveal is on the alarm's timeline now
  } catch (e) { EC.showError(e); }
}

function deviceCard(d) {
  const dev = d.device;
  const devRows = dev ? kv([
    ["dev.id", raw(dev.id)],
    ["dev.kind", trNode("devkind", dev.kind)],
    ["dev.online", h("span", { class: dev.online ? "ok" : "bad" }, t(dev.online ? "dev.is_online" : "dev.is_offline"))],
    ["dev.battery", dev.battery === null || dev.battery === undefined ? orNone(null) : `${dev.battery}%`],
    ["dev.last_seen", dev.last_seen_at ? EC.fmtTime(dev.last_seen_at) : orNone(null)],
  ]) : h("p", { class: "muted" }, t("common.none"));
  const events = (d.events || []).slice(-12).reverse();
  return section("detail.device", devRows,
    h("h4", {}, t("detail.events")),
    events.length ? h("ul", { class: "events" }, events.map((e) => h("li", {},
      h("span", { class: "mono" }, EC.fmtTime(e.time)), " ", trNode("evt", e.type)))) : h("p", { class: "muted" }, t("common.none")));
}

function dispatchSection(d) {
  const a = d.alarm;
  const p = d.proposal;
  const parts = [];
  if (p && p.responders && (a.allowed_actions || []).includes("dispatch")) {
    parts.push(h("p", { class: "small" }, t("dispatch.next_step", { step: p.step + 1 }), " ", tr("rkind", p.kind),
      " · ", t("dispatch.timeout", { s: p.timeout_s })));
    parts.push(p.responders.length ? h("ul", { class: "responders" }, p.responders.map((r) => h("li", {},
      // docs/api.md calls it Responder.id; the engine sends responder_id (null for family
      // contacts and emergency numbers, which the policy step reaches by itself).
      h("label", {}, h("input", { type: "checkbox", name: "responder", value: r.responder_id ?? r.id ?? "",
        disabled: (r.responder_id ?? r.id) == null }), " ", raw(r.name), " ",
        r.phone ? raw(r.phone, "phone muted") : null,
        r.distance_m !== null && r.distance_m !== undefined ? h("span", { class: "muted small" }, " ", t("dispatch.distance", { km: (r.distance_m / 1000).toFixed(1) })) : null))))
      : h("p", { class: "muted" }, t("dispatch.nobody")));
    parts.push(h("p", { class: "small muted" }, t("dispatch.hint")));
  }
  const offers = d.offers || [];
  parts.push(h("h4", {}, t("dispatch.answers")));
  parts.push(offers.length ? h("table", { class: "offers" },
    h("thead", {}, h("tr", {}, ["offer.who", "offer.kind", "offer.status", "offer.offered", "offer.answered", "offer.action"].map((k) => h("th", {}, t(k))))),
    h("tbody", {}, offers.map((o) => h("tr", { class: `offer-${o.status}` },
      h("td", {}, o.name ? raw(o.name) : t("common.none")),
      h("td", {}, tr("rkind", o.responder_kind)),
      h("td", {}, h("span", { class: `ostatus o-${o.status}` }, tr("offer", o.status)), o.reason ? h("span", { class: "muted small" }, " ", raw(o.reason)) : null),
      h("td", {}, EC.fmtTime(o.offered_at)),
      h("td", {}, o.answered_at ? EC.fmtTime(o.answered_at) : ""),
      h("td", {}, (o.status === "pending" || o.status === "called") && a.status === "dispatched"
        ? h("button", { class: "small", "data-action": "accept-offer", onclick: () => act("accept", { offer_id: o.id }) }, t("act.accept_for")) : "")))))
    : h("p", { class: "muted" }, t("dispatch.no_offers")));
  return section("detail.dispatch", ...parts);
}

function timelineSection(d) {
  const items = (d.timeline || []).slice().reverse();
  return section("detail.timeline", h("ol", { class: "timeline" }, items.map((e) => {
    const det = e.detail || {};
    const text = det.text || det.note || det.reason || null;
    return h("li", {},
      h("span", { class: "mono" }, EC.fmtTime(e.at)), " ",
      h("strong", {}, trNode("action", e.action)), " ",
      e.to_status && e.from_status !== e.to_status ? h("span", { class: "muted small" }, tr("status", e.from_status), " → ", tr("status", e.to_status), " ") : null,
      h("span", { class: "muted" }, t("detail.by"), " ", raw(e.actor)),
      text ? h("div", { class: "tl-text" }, raw(text)) : null,
      det.disposition ? h("div", { class: "tl-text" }, tr("disp", det.disposition)) : null,
      det.work_order_id ? h("div", { class: "tl-text" }, h("button", { class: "small link", "data-action": "open-order",
        onclick: () => ECOrders.open(det.work_order_id) }, t("detail.open_order"), " ", raw(det.number || "", "mono"))) : null);
  })));
}
