/* The care worker's page (/worker, issue 8): a phone in the hand at the resident's door.
 * My orders for today and the coming days, the orders offered to my provider, accept,
 * check in and check out with the phone's position, the service record, and what the
 * visit checks found. Positions are taken only at check-in and check-out (design §2.1:
 * no tracking), and never written to the browser console. */
"use strict";

(() => {
  const { t, tr, h, raw, api } = EC;
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 60000;
  const PENDING_MS = 10 * 60000; // how long an unanswered check-in/out tap is repeated as is
  const GROUPS = ["now", "today", "offers", "upcoming", "done"];
  // The tasks a worker ticks in the service record; codes go to the API, words stay here.
  const TASKS = [
    ["bathing", "worker.task_bathing"],
    ["dressing", "worker.task_dressing"],
    ["meal", "worker.task_meal"],
    ["feeding", "worker.task_feeding"],
    ["cleaning", "worker.task_cleaning"],
    ["medication", "worker.task_medication"],
    ["vitals", "worker.task_vitals"],
    ["company", "worker.task_company"],
    ["safety_check", "worker.task_safety_check"],
    ["other", "worker.task_other"],
  ];
  // Why the phone gave no position, as the API's no_fix codes, with what to tell the worker.
  const NO_FIX = [
    ["denied", "worker.gps_denied"],
    ["unavailable", "worker.gps_unavailable"],
    ["timeout", "worker.gps_timeout"],
    ["unsupported", "worker.gps_unsupported"],
    ["insecure", "worker.gps_insecure"],
  ];
  // Why a worker gives a visit back; the words go to the desk in the worker's language.
  const DECLINE = [
    ["ill", "worker.decline_ill"],
    ["clash", "worker.decline_clash"],
    ["too_far", "worker.decline_too_far"],
    ["other", "worker.decline_other"],
  ];
  // The same reasons, short, for a visit's record line.
  const NO_FIX_SHORT = [
    ["denied", "worker.nofix_denied"],
    ["unavailable", "worker.nofix_unavailable"],
    ["timeout", "worker.nofix_timeout"],
    ["unsupported", "worker.nofix_unsupported"],
  ];
  const SEVERITY = [
    ["hard", "worker.sev_hard"],
    ["soft", "worker.sev_soft"],
    ["info", "worker.sev_info"],
  ];
  const DONE = new Set(["checked_out", "verified", "settled", "rejected", "cancelled"]);
  // While the server shows a visit's address (the order is mine and ahead or under way).
  const ADDRESS_WHILE = new Set(["accepted", "checked_in"]);
  const FINDINGS_FROM = new Set(["checked_in", "checked_out", "verified", "settled", "rejected"]);

  const state = {
    orders: [],
    details: new Map(), // order id -> GET /api/work-orders/{id} (anomalies, allowed_actions)
    items: new Map(), // service item code -> catalogue row
    noFix: new Map(), // order id -> {action, reason}: the last position attempt failed
    drafts: new Map(), // order id -> {tasks: Set, notes}: the record being written
    busy: new Set(),
    declining: new Set(), // order ids whose decline form is open
    locating: new Set(), // order ids waiting for the phone's position
    // order id -> POST /api/work-orders/{id}/reveal: in memory only, never in local or
    // session storage, gone with the visit, a hide tap or signing out.
    addresses: new Map(),
    timer: null,
    stale: false, // new data arrived while the worker was typing
  };

  const isWorker = () => !!(EC.session && EC.session.role === "provider_worker" && EC.session.worker_id);

  const keyOf = (table, code) => (table.find((x) => x[0] === code) || [])[1];

  /* ------------------------------------------------------------ time */
  function startOfToday() {
    const d = new Date(EC.now());
    d.setHours(0, 0, 0, 0);
    return d;
  }
  function whenOf(o) { return o.scheduled_start || o.due_by || null; }
  function fmtWhen(iso) {
    if (!iso) return t("worker.unscheduled");
    const d = new Date(iso);
    const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
    const days = Math.round((new Date(d).setHours(0, 0, 0, 0) - startOfToday()) / 86400000);
    if (days === 0) return t("worker.at_today", { time: hm });
    if (days === 1) return t("worker.at_tomorrow", { time: hm });
    return t("worker.at_date", { date: `${d.getMonth() + 1}/${d.getDate()}`, time: hm });
  }

  /* ------------------------------------------------------------ loading */
  async function loadItems() {
    const rows = await api("GET", "/api/service-items");
    state.items = new Map(rows.map((r) => [r.code, r]));
  }

  /* Today's and later orders, plus whatever still waits on me from earlier days (an offer,
   * an accepted visit not yet made, a visit not checked out): nothing open is ever hidden
   * by the date filter. */
  async function loadOrders() {
    const since = encodeURIComponent(startOfToday().toISOString());
    const lists = await Promise.all([
      api("GET", `/api/work-orders?from=${since}&limit=200`),
      api("GET", "/api/work-orders?status=dispatched&limit=200"),
      api("GET", "/api/work-orders?status=accepted&limit=200"),
      api("GET", "/api/work-orders?status=checked_in&limit=200"),
    ]);
    const byId = new Map();
    lists.flat().forEach((o) => byId.set(o.id, o));
    state.orders = [...byId.values()];
    // A visit that is over (or gone to someone else) keeps no address on the phone.
    for (const id of [...state.addresses.keys()]) {
      const o = byId.get(id);
      if (!o || !ADDRESS_WHILE.has(o.status)) state.addresses.delete(id);
    }
    // Findings live on the order's detail; fetch it for the visits that have begun.
    const begun = state.orders.filter((o) => FINDINGS_FROM.has(o.status));
    const details = await Promise.all(begun.map((o) => api("GET", `/api/work-orders/${o.id}`)
      .catch((e) => { if (e.status === 404) return null; throw e; })));
    state.details = new Map(details.filter(Boolean).map((d) => [d.id, d]));
  }

  /* A worker typing the service record keeps the form as it is: the new data is drawn when
   * they leave the field (a redraw would take the cursor away mid-word). */
  function typing() {
    const el = document.activeElement;
    return !!(el && el.closest && el.closest("form.record, form.decline"));
  }
  function draw() {
    if (typing()) { state.stale = true; return; }
    state.stale = false;
    render();
    $("updated").textContent = EC.fmtTime(new Date(EC.now()).toISOString());
  }

  async function refresh() {
    if (!isWorker()) return;
    try {
      await loadOrders();
      draw();
    } catch (e) {
      EC.showError(e);
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(async () => { await refresh(); schedule(); }, REFRESH_MS);
  }

  /* ------------------------------------------------------------ grouping */
  function groupOf(o) {
    const mine = o.worker_id !== null && o.worker_id === EC.session.worker_id;
    if (o.status === "checked_in") return "now";
    if (o.status === "dispatched" && !mine) return "offers";
    if (DONE.has(o.status)) {
      const at = o.checked_out_at || o.cancelled_at || o.rejected_at || o.created_at;
      return new Date(at) >= startOfToday() ? "done" : null;
    }
    const when = whenOf(o);
    const tomorrow = new Date(startOfToday().getTime() + 86400000);
    if (!when || new Date(when) < tomorrow) return "today"; // overdue ones stay in sight
    return "upcoming";
  }

  function sortKey(o) { return Date.parse(whenOf(o) || o.created_at); }

  /* ------------------------------------------------------------ rendering */
  function render() {
    const groups = Object.fromEntries(GROUPS.map((g) => [g, []]));
    for (const o of state.orders) {
      const g = groupOf(o);
      if (g) groups[g].push(o);
    }
    for (const g of GROUPS) {
      groups[g].sort((a, b) => sortKey(a) - sortKey(b));
      $(`group-${g}`).replaceChildren(...groups[g].map(card));
      const empty = $(`empty-${g}`);
      if (empty) empty.hidden = groups[g].length > 0;
    }
    document.querySelector('[data-group="now"]').hidden = groups.now.length === 0;
    document.body.dataset.orders = String(state.orders.length);
  }

  function itemName(code) {
    const item = state.items.get(code);
    return item ? raw(item.name_zh) : raw(code);
  }

  /* What this worker may do now. The order's detail says so when the API offers it
   * (allowed_actions); otherwise the three moves that are a worker's. */
  function actionsOf(o) {
    const d = state.details.get(o.id);
    if (d && Array.isArray(d.allowed_actions)) return d.allowed_actions;
    return { dispatched: ["accept"], accepted: ["check-in", "reject"], checked_in: ["check-out"] }[o.status] || [];
  }

  function card(o) {
    const d = state.details.get(o.id);
    const body = h("article", { class: `wcard st-${o.status}`, "data-id": o.id, "data-status": o.status },
      h("div", { class: "wcard-head" },
        h("span", { class: `status st-${o.status}` }, EC.trNode("wstatus", o.status)),
        h("b", { class: "wcard-item" }, itemName(o.service_item_code)),
        o.quantity && o.quantity !== 1 ? h("span", { class: "muted" }, `× ${o.quantity}`) : null,
        h("span", { class: "wcard-when" }, fmtWhen(whenOf(o)))),
      h("div", { class: "wcard-meta small muted" },
        raw(o.number), " · ", t("worker.resident", { id: o.resident_id })),
      addressBlock(o),
      pointLine(o),
      // Findings first: right after check-in the worker sees what the checks said.
      findingsBlock(o, d),
      actionsBlock(o));
    return body;
  }

  /* Where the visit is: asked for on a tap (each look is recorded by the server against
   * this order), shown until hidden or the visit ends. */
  function addressBlock(o) {
    const mine = o.worker_id !== null && o.worker_id === EC.session.worker_id;
    if (!mine || !ADDRESS_WHILE.has(o.status)) return null;
    const a = state.addresses.get(o.id);
    if (!a) {
      return h("button", { class: "ghost", "data-act": "show-address", disabled: state.busy.has(o.id),
        onclick: () => showAddress(o) }, t("worker.address_show"));
    }
    const c = a.contact;
    return h("div", { class: "address", "data-address": o.id },
      h("div", {}, h("b", {}, t("worker.address")), ": ", raw(a.address || "")),
      a.access_notes ? h("div", { class: "small" }, h("b", {}, t("worker.address_access")), ": ", raw(a.access_notes)) : null,
      c && c.phone ? h("div", { class: "small" }, h("b", {}, t("worker.address_contact")), ": ",
        raw(c.name || ""), " ", h("a", { href: `tel:${c.phone}` }, raw(c.phone))) : null,
      h("p", { class: "small muted" }, t("worker.address_logged")),
      h("button", { class: "ghost small", "data-act": "hide-address",
        onclick: () => { state.addresses.delete(o.id); render(); } }, t("worker.address_hide")));
  }

  async function showAddress(o) {
    if (state.busy.has(o.id)) return;
    state.busy.add(o.id);
    try {
      state.addresses.set(o.id, await api("POST", `/api/work-orders/${o.id}/reveal`));
    } catch (e) {
      // 403 (not my order), 409 (the visit is over), 429 (too many): the server says which.
      if ([403, 409, 429].includes(e.status)) EC.toast(t("worker.address_refused"), "error", e.detail);
      else EC.showError(e);
    } finally {
      state.busy.delete(o.id);
      render();
    }
  }

  function pointLine(o) {
    const parts = [];
    for (const [end, label] of [["check_in", "worker.checked_in_at"], ["check_out", "worker.checked_out_at"]]) {
      const p = o[end];
      const at = end === "check_in" ? o.checked_in_at : o.checked_out_at;
      if (!p || !at) continue;
      let where;
      if (p.lat === null || p.lat === undefined) {
        where = t("worker.no_position", { reason: t(keyOf(NO_FIX_SHORT, p.no_fix) || "worker.nofix_unavailable") });
      } else if (p.distance_m !== null && p.distance_m !== undefined) {
        where = t("worker.distance", { m: Math.round(p.distance_m) });
      } else {
        where = t("worker.position_kept");
      }
      parts.push(h("div", { class: "small", "data-point": end },
        t(label, { time: EC.fmtTime(at) }), " · ", where));
    }
    return parts.length ? h("div", { class: "wcard-points" }, parts) : null;
  }

  function actionsBlock(o) {
    const acts = actionsOf(o);
    const busy = state.busy.has(o.id);
    const out = h("div", { class: "wcard-actions" });
    if (state.locating.has(o.id)) out.append(h("p", { class: "locating", role: "status" }, t("worker.locating")));
    if (acts.includes("accept")) {
      out.append(h("button", { class: "primary big", "data-act": "accept", disabled: busy,
        onclick: () => accept(o) }, t("worker.accept")));
    }
    if (acts.includes("check-in")) {
      out.append(h("button", { class: "primary big", "data-act": "check-in", disabled: busy,
        onclick: () => checkIn(o) }, t("worker.check_in")));
    }
    if (acts.includes("check-out")) out.append(recordForm(o, busy));
    // Giving back a visit I accepted (待改派: the desk dispatches it again). An offer not yet
    // mine is simply left for a colleague: rejecting it would take it from the provider.
    if (acts.includes("reject") && o.worker_id === EC.session.worker_id && o.status === "accepted") {
      out.append(state.declining.has(o.id) ? declineForm(o, busy)
        : h("button", { class: "ghost", "data-act": "decline", disabled: busy,
          onclick: () => { state.declining.add(o.id); render(); } }, t("worker.decline")));
    }
    const nf = state.noFix.get(o.id);
    if (nf) out.append(noFixPanel(o, nf, busy));
    return out.childNodes.length ? out : null;
  }

  function declineForm(o, busy) {
    const why = h("select", { name: "why" },
      DECLINE.map(([code, key]) => h("option", { value: code }, t(key))));
    const note = h("input", { name: "note", maxlength: "200", placeholder: t("worker.decline_note") });
    return h("form", { class: "decline", "data-decline": o.id,
      onsubmit: (ev) => {
        ev.preventDefault();
        const label = t(keyOf(DECLINE, why.value));
        decline(o, note.value.trim() ? `${label}: ${note.value.trim()}` : label);
      } },
      h("label", {}, h("span", { class: "small muted" }, t("worker.decline_why")), why),
      note,
      h("div", { class: "row" },
        h("button", { type: "submit", class: "danger", "data-act": "decline-confirm", disabled: busy },
          t("worker.decline_confirm")),
        h("button", { type: "button", class: "ghost",
          onclick: () => { state.declining.delete(o.id); render(); } }, t("worker.decline_back"))));
  }

  /* The record being written survives a reload (phones discard background tabs) in this
   * tab's session storage, never in local storage: notes about a resident must not stay on
   * a shared phone once the tab is closed. */
  const draftSlot = (id) => `eldercare.worker.draft.${id}`;
  function draftOf(o) {
    if (!state.drafts.has(o.id)) {
      let saved = null;
      try { saved = JSON.parse(sessionStorage.getItem(draftSlot(o.id)) || "null"); } catch (e) { saved = null; }
      state.drafts.set(o.id, { tasks: new Set((saved && saved.tasks) || []), notes: (saved && saved.notes) || "" });
    }
    return state.drafts.get(o.id);
  }
  function keepDraft(o) {
    const d = draftOf(o);
    sessionStorage.setItem(draftSlot(o.id), JSON.stringify({ tasks: [...d.tasks], notes: d.notes }));
  }
  function dropDraft(id) {
    state.drafts.delete(id);
    sessionStorage.removeItem(draftSlot(id));
  }

  function recordForm(o, busy) {
    const draft = draftOf(o);
    const boxes = TASKS.map(([code, key]) => {
      const box = h("input", { type: "checkbox", name: "task", value: code,
        checked: draft.tasks.has(code) });
      box.addEventListener("change", () => {
        if (box.checked) draft.tasks.add(code); else draft.tasks.delete(code);
        keepDraft(o);
      });
      return h("label", { class: "task" }, box, " ", t(key));
    });
    const notes = h("textarea", { name: "notes", rows: "3", maxlength: "2000",
      placeholder: t("worker.notes_hint") });
    notes.value = draft.notes;
    notes.addEventListener("input", () => { draft.notes = notes.value; keepDraft(o); });
    return h("form", { class: "record", "data-record": o.id,
      onsubmit: (ev) => { ev.preventDefault(); checkOut(o); } },
      h("h3", {}, t("worker.record")),
      h("fieldset", { class: "tasks" }, h("legend", { class: "small muted" }, t("worker.tasks")), boxes),
      h("label", { class: "notes" }, h("span", { class: "small muted" }, t("worker.notes")), notes),
      h("button", { type: "submit", class: "primary big", "data-act": "check-out", disabled: busy },
        t("worker.check_out")));
  }

  function noFixPanel(o, nf, busy) {
    return h("div", { class: "nofix", role: "alert", "data-nofix": nf.reason },
      h("p", {}, t(keyOf(NO_FIX, nf.reason) || "worker.gps_unavailable")),
      h("p", { class: "small" }, t("worker.gps_without_note")),
      h("div", { class: "row" },
        h("button", { "data-act": "retry-gps", disabled: busy,
          onclick: () => (nf.action === "check-in" ? checkIn(o) : checkOut(o)) }, t("worker.gps_retry")),
        h("button", { class: "danger", "data-act": "without-gps", disabled: busy,
          onclick: () => (nf.action === "check-in" ? checkIn(o, nf.reason) : checkOut(o, nf.reason)) },
        t(nf.action === "check-in" ? "worker.check_in_without" : "worker.check_out_without"))));
  }

  function findingsBlock(o, d) {
    const found = d && Array.isArray(d.anomalies) ? d.anomalies : [];
    if (!found.length) {
      return d && o.status !== "checked_in"
        ? h("p", { class: "small ok findings-none" }, t("worker.no_findings")) : null;
    }
    return h("div", { class: "findings" },
      h("h3", {}, t("worker.findings")),
      h("ul", {}, found.map((a) => h("li", { class: `finding sev-${a.severity}`, "data-rule": a.rule_code },
        h("b", {}, EC.trNode("wrule", a.rule_code)), " ",
        h("span", { class: `badge sev-${a.severity}` }, t(keyOf(SEVERITY, a.severity) || "worker.sev_info")),
        a.status !== "open" ? h("span", { class: "small muted" }, " · ", EC.trNode("wdecision", a.status)) : null,
        evidence(a)))),
      o.revisit_required ? h("p", { class: "small" }, t("worker.revisit_required")) : null);
  }

  /* The numbers a worker can act on; the rest of the evidence is for the reviewers. */
  function evidence(a) {
    const e = a.evidence || {};
    if (a.rule_code === "gps_far") {
      if (e.reason === "no_point") return h("div", { class: "small" }, t("worker.ev_no_point"));
      if (e.distance_m !== null && e.distance_m !== undefined) {
        return h("div", { class: "small" },
          t("worker.ev_distance", { m: Math.round(e.distance_m), limit: Math.round(e.threshold_m || 0) }));
      }
      if (e.accuracy_m !== null && e.accuracy_m !== undefined) {
        return h("div", { class: "small" }, t("worker.ev_accuracy", { m: Math.round(e.accuracy_m) }));
      }
    }
    if (a.rule_code === "alarm_open_at_check_in") {
      // The worker is at the door of someone whose alarm nobody has closed: say it plainly.
      return h("div", { class: "bad" }, t("worker.ev_alarm_open"));
    }
    if (a.rule_code === "duration_out_of_range" && e.duration_min !== undefined) {
      return h("div", { class: "small" }, t("worker.ev_duration", { min: Math.round(e.duration_min) }));
    }
    if (a.rule_code === "worker_overlap" && e.overlap_min !== undefined) {
      return h("div", { class: "small" }, t("worker.ev_overlap", { min: e.overlap_min }));
    }
    return null;
  }

  /* ------------------------------------------------------------ position */
  class NoFix extends Error {
    constructor(reason) { super(reason); this.reason = reason; }
  }

  /* A fresh fix (no cached one: the last may be from the previous home), standing for
   * "I am at the door now". */
  function locate() {
    return new Promise((resolve, reject) => {
      // Browsers give positions only to pages served over HTTPS (or from this machine).
      if (!window.isSecureContext) { reject(new NoFix("insecure")); return; }
      if (!navigator.geolocation) { reject(new NoFix("unsupported")); return; }
      navigator.geolocation.getCurrentPosition(
        (p) => resolve({
          lat: Number(p.coords.latitude.toFixed(6)),
          lon: Number(p.coords.longitude.toFixed(6)),
          // The API takes up to 100 km; a coarser fix is as good as none, but still said.
          accuracy_m: Math.min(100000, Math.round(p.coords.accuracy * 10) / 10),
        }),
        (err) => reject(new NoFix({ 1: "denied", 2: "unavailable", 3: "timeout" }[err.code] || "unavailable")),
        { enableHighAccuracy: true, timeout: 20000, maximumAge: 0 });
    });
  }

  /* ------------------------------------------------------------ actions */
  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  }

  /* Check-in and check-out carry an Idempotency-Key kept with the exact body until an answer
   * comes: a tap repeated after a lost answer (a lift, a basement) sends the same request
   * again and gets the first answer back instead of a second visit or a 409. */
  async function sendOnce(o, action, makeBody) {
    const slot = `eldercare.worker.${o.id}.${action}`;
    let pending = null;
    try { pending = JSON.parse(sessionStorage.getItem(slot) || "null"); } catch (e) { pending = null; }
    // A tap left unanswered long ago is not repeated: its position is stale. A new one is
    // safe too, since the order cannot be checked in twice (409, and the list shows why).
    if (pending && !(Date.now() - pending.at < PENDING_MS)) pending = null;
    if (!pending) {
      pending = { key: newKey(), body: await makeBody(), at: Date.now() };
      sessionStorage.setItem(slot, JSON.stringify(pending));
    }
    try {
      const out = await api("POST", `/api/work-orders/${o.id}/${action}`, pending.body,
        { "Idempotency-Key": pending.key });
      sessionStorage.removeItem(slot);
      return out;
    } catch (e) {
      // No answer, or a gateway's instead of the server's: the server may have done it.
      // Anything else was the server's answer, so the next tap is a new request.
      if (![0, 502, 503, 504].includes(e.status)) sessionStorage.removeItem(slot);
      throw e;
    }
  }

  async function run(o, fn) {
    if (state.busy.has(o.id)) return;
    state.busy.add(o.id);
    render();
    try {
      await fn();
    } catch (e) {
      if (e instanceof NoFix) {
        render();
      } else if (e.status === 409 || e.status === 404) {
        // The shared texts speak of alarms; here it is the order that moved on meanwhile
        // (taken by a colleague, cancelled by the desk). The server's reason goes with it.
        EC.toast(t(e.status === 409 ? "worker.conflict" : "worker.gone"), "error", e.detail);
      } else {
        EC.showError(e);
      }
    } finally {
      state.busy.delete(o.id);
      await refresh();
    }
  }

  function accept(o) {
    return run(o, async () => {
      await api("POST", `/api/work-orders/${o.id}/accept`, {});
      EC.toast(t("worker.accepted"), "ok");
    });
  }

  function decline(o, reason) {
    return run(o, async () => {
      await api("POST", `/api/work-orders/${o.id}/reject`, { reason });
      state.declining.delete(o.id);
      EC.toast(t("worker.declined"), "ok");
    });
  }

  /* The body of a check-in or check-out: a fresh fix, or (after the worker chose to go on
   * without one) the reason there is none. */
  async function pointBody(o, action, withoutReason) {
    const base = { client_time: new Date().toISOString() };
    if (withoutReason) return { ...base, no_fix: withoutReason === "insecure" ? "unsupported" : withoutReason };
    // A fix can take many seconds indoors: say what the page is waiting for.
    state.locating.add(o.id);
    render();
    try {
      const fix = await locate();
      state.noFix.delete(o.id);
      return { ...base, ...fix };
    } catch (e) {
      if (e instanceof NoFix) state.noFix.set(o.id, { action, reason: e.reason });
      throw e;
    } finally {
      state.locating.delete(o.id);
    }
  }

  function reportFindings(out) {
    const found = (out && out.new_anomalies) || [];
    if (found.length) EC.toast(t("worker.found", { n: found.length }), "warn");
  }

  function checkIn(o, withoutReason) {
    return run(o, async () => {
      const out = await sendOnce(o, "check-in", () => pointBody(o, "check-in", withoutReason));
      state.noFix.delete(o.id);
      EC.toast(t("worker.checked_in"), "ok");
      reportFindings(out);
    });
  }

  function checkOut(o, withoutReason) {
    const draft = draftOf(o);
    return run(o, async () => {
      const out = await sendOnce(o, "check-out", async () => {
        const body = await pointBody(o, "check-out", withoutReason);
        const record = { tasks: TASKS.map((x) => x[0]).filter((c) => draft.tasks.has(c)) };
        if (draft.notes.trim()) record.notes = draft.notes.trim();
        return { ...body, record };
      });
      state.noFix.delete(o.id);
      dropDraft(o.id);
      EC.toast(t("worker.checked_out"), "ok");
      reportFindings(out);
    });
  }

  /* ------------------------------------------------------------ session */
  function showWho() {
    $("whoworker").textContent = isWorker()
      ? t("worker.worker_no", { id: EC.session.worker_id }) : tr("role", EC.session.role);
  }

  async function enter() {
    EC.showApp();
    showWho();
    // Other roles see every order in the system through the same API; this page is not
    // theirs (the console is), so it shows them nothing to act on.
    $("not-worker").hidden = isWorker();
    document.querySelector(".worker-main").hidden = !isWorker();
    EC.applyI18n();
    if (isWorker()) {
      try {
        await loadItems();
        await loadOrders();
        draw();
      } catch (e) {
        EC.showError(e);
      }
      schedule();
    }
    document.body.dataset.loaded = "true";
  }

  function leave(reasonKey) {
    clearTimeout(state.timer);
    document.body.dataset.loaded = "false";
    state.orders = [];
    state.details.clear();
    state.drafts.clear();
    state.addresses.clear();
    if (!reasonKey) {
      // Signed out on purpose (not expired): nothing of the visits stays in this tab.
      Object.keys(sessionStorage).filter((k) => k.startsWith("eldercare.worker."))
        .forEach((k) => sessionStorage.removeItem(k));
    }
    state.noFix.clear();
    state.declining.clear();
    EC.showLogin(reasonKey);
  }

  async function boot() {
    await EC.loadDicts();
    EC.applyI18n();
    EC.wireLang();
    EC.onLang(() => {
      EC.applyI18n();
      if (EC.session) {
        showWho();
        if (isWorker()) render();
      }
    });
    EC.onLogout(leave);
    EC.wireLogin($("login-form"), enter);
    $("logout").addEventListener("click", () => EC.logout());
    $("refresh").addEventListener("click", () => refresh());
    document.addEventListener("focusout", () => {
      // After the blur settles, so moving between two fields of the form is not leaving it.
      setTimeout(() => { if (state.stale) draw(); }, 0);
    });
    // Back to the page after the phone slept: show what changed meanwhile.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && EC.session) refresh();
    });
    document.body.dataset.ready = "true";
    if (EC.session) enter(); else leave(null);
  }

  boot();
})();
