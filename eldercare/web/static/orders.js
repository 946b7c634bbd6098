/* The console's work-order tab (工单) and 12349 call intake (来电登记).
 *
 * What may be done to an order is the server's: GET /api/work-orders/{id} carries
 * allowed_actions (and verify_blockers), as every alarm does; the vocabularies come from
 * GET /api/console/orders-meta. Changes arrive over the console's websocket as
 * {type: "work_order"}; the list is then reloaded from the API with the operator's filters,
 * so the page never keeps a state machine or a filter logic of its own. */
"use strict";

const ECOrders = (() => {
  const { t, tr, trNode, h, raw, api } = EC;
  const $ = (id) => document.getElementById(id);
  const DONE = ["verified", "settled", "cancelled", "rejected"];

  let hooks = { selectAlarm: () => {}, showTab: () => {}, openAlarms: () => [], isShown: () => false };
  const state = {
    meta: null,
    providers: [],
    items: [],
    districts: [],
    orders: [],
    // What a duty desk follows by default: orders not yet done with.
    filters: { status: "unfinished", provider: "", district: "", item: "" },
    toDispatch: 0,
    selected: null, // order id shown in detail
    detail: null,
    candidates: null, // providers contracted for the selected order
    moreRevisit: null, // order id whose extra revisit form is open
    workers: new Map(), // provider id -> workers
    call: null, // the call being taken: {started_at, resident, results, id, order}
    recentCalls: [],
  };

  function init(h0) { hooks = { ...hooks, ...h0 }; }

  async function ensureMeta() {
    if (state.meta) return;
    const [meta, provs, items, dists] = await Promise.all([
      api("GET", "/api/console/orders-meta"),
      api("GET", "/api/providers").catch(() => []),
      api("GET", "/api/service-items"),
      api("GET", "/api/districts"),
    ]);
    state.meta = meta;
    // Only the hotline desk takes calls (POST /api/hotline/calls would refuse the rest).
    const callTab = document.querySelector("[data-tab=call]");
    if (callTab) callTab.hidden = !meta.may_take_calls;
    state.providers = provs;
    state.items = items;
    state.districts = dists;
  }

  function itemName(code) {
    const it = state.items.find((i) => i.code === code);
    return it ? it.name_zh : code;
  }
  function money(fen) {
    return fen === null || fen === undefined ? null : t("wo.yuan", { y: (fen / 100).toFixed(2) });
  }
  function orNone(v) {
    return v === null || v === undefined || v === "" ? h("span", { class: "muted" }, t("common.none")) : raw(v);
  }
  function kv(rows) {
    return h("table", { class: "kv" }, rows.filter(Boolean).map(([k, v]) => h("tr", {}, h("th", {}, t(k)), h("td", {}, v))));
  }
  function woStatus(s) { return h("span", { class: `status wo-${s}` }, tr("wostatus", s)); }
  function when(iso) { return iso ? h("span", { class: "mono" }, EC.fmtTime(iso)) : h("span", { class: "muted" }, t("common.none")); }

  /* ------------------------------------------------------------ list */
  function query() {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(state.filters)) if (v) p.set(k, v);
    return p.toString();
  }

  async function loadList() {
    try {
      await ensureMeta();
      const x = await api("GET", `/api/console/work-orders?${query()}`);
      state.orders = x.orders;
      state.toDispatch = x.to_dispatch;
      renderBadge();
      if (hooks.isShown("orders") && !state.selected) renderList();
    } catch (e) { EC.showError(e); }
  }

  // The tab says how many orders wait for a dispatch, whichever tab is open.
  function renderBadge() {
    const tab = document.querySelector("[data-tab=orders]");
    if (!tab) return;
    let b = tab.querySelector(".badge");
    if (!state.toDispatch) { if (b) b.remove(); return; }
    if (!b) { b = h("span", { class: "badge warn", id: "wo-badge" }); tab.append(" ", b); }
    b.textContent = String(state.toDispatch);
    b.title = t("wo.to_dispatch", { n: state.toDispatch });
  }

  let listTimer = null;
  function scheduleList() {
    clearTimeout(listTimer);
    listTimer = setTimeout(loadList, 200);
  }

  function filterSelect(name, allKey, options) {
    return h("select", {
      id: `wo-f-${name}`, "aria-label": t(`wo.filter_${name}`),
      onchange: (ev) => { state.filters[name] = ev.target.value; loadList(); },
    }, h("option", { value: "" }, t(allKey)), options.map(([v, label, isData]) => h("option", {
      value: v, selected: String(state.filters[name]) === String(v), "data-raw": isData ? "" : null,
    }, label)));
  }

  function sourceNode(o) {
    if (o.alarm_id) {
      return h("button", { class: "small link", "data-action": "open-alarm", title: t("wo.open_alarm"),
        onclick: (ev) => { ev.stopPropagation(); hooks.selectAlarm(o.alarm_id); } }, t("wo.from_alarm"));
    }
    return h("span", { class: "badge" }, tr("source", o.source));
  }

  // The time that matters most: the deadline, else the appointment, else when it came in.
  function whenNode(o) {
    const [key, at] = o.due_by ? ["wo.t_due", o.due_by] : o.scheduled_start ? ["wo.t_scheduled", o.scheduled_start] : ["wo.t_created", o.created_at];
    return [h("span", { class: "muted" }, t(key)), " ", when(at)];
  }

  function renderList() {
    const box = $("orders");
    if (!box || !state.meta) return;
    if (state.selected) return renderDetail();
    const f = h("div", { class: "row filters" },
      filterSelect("status", "wo.all_statuses", [["unfinished", t("wo.unfinished")], ...state.meta.statuses.map((s) => [s, tr("wostatus", s)])]),
      filterSelect("provider", "wo.all_providers", state.providers.map((p) => [p.id, p.name, true])),
      filterSelect("district", "wo.all_districts", state.districts.map((d) => [d.code, `${d.name} ${d.code}`, true])),
      filterSelect("item", "wo.all_items", state.items.map((i) => [i.code, i.name_zh, true])),
      h("span", { class: "muted small", id: "wo-count" }, t("wo.count", { n: state.orders.length })));
    const rows = state.orders.map((o) => h("tr", {
      class: `clickable wo-row${DONE.includes(o.status) ? " done" : ""}`,
      dataset: { id: o.id, status: o.status, number: o.number }, onclick: () => open(o.id),
    },
    h("td", {}, raw(o.number, "mono")),
    h("td", {}, raw(o.item_name || o.service_item_code)),
    h("td", {}, raw(o.resident_name)),
    h("td", {}, o.provider_name ? raw(o.provider_name) : h("span", { class: "muted" }, t("wo.unassigned")),
      o.worker_name ? h("span", { class: "muted small" }, " · ", raw(o.worker_name)) : null),
    h("td", {}, woStatus(o.status)),
    h("td", {}, sourceNode(o)),
    h("td", { class: "small nowrap" }, whenNode(o))));
    box.replaceChildren(f, rows.length ? h("table", { class: "queue orders" },
      h("thead", {}, h("tr", {}, ["wo.number", "wo.item", "wo.resident", "wo.provider", "wo.status", "wo.source", "wo.when"].map((k) => h("th", {}, t(k))))),
      h("tbody", { id: "orders-body" }, rows)) : h("p", { class: "empty" }, t("wo.none")));
  }

  /* ------------------------------------------------------------ detail */
  async function open(id) {
    state.selected = id;
    state.candidates = null;
    if (hooks.isShown("orders")) await loadDetail();
    else await hooks.showTab("orders"); // which loads the detail
  }

  async function back() {
    state.selected = null;
    state.detail = null;
    await loadList(); // the list as it is now, not as it was when the detail opened
  }

  async function loadDetail() {
    const id = state.selected;
    if (!id) return;
    try {
      await ensureMeta();
      const [d, names] = await Promise.all([
        api("GET", `/api/work-orders/${id}`),
        api("GET", `/api/console/work-orders?ids=${encodeURIComponent(id)}`),
      ]);
      if (state.selected !== id) return;
      state.detail = { ...d, ...(names.orders[0] || {}), ...d };
      if (d.allowed_actions.includes("dispatch") && state.candidates === null) {
        state.candidates = await api("GET", `/api/console/work-orders/${id}/providers`);
      }
      renderDetail();
    } catch (e) {
      if (e.status === 404) { state.selected = null; state.detail = null; renderList(); }
      EC.showError(e);
    }
  }

  let detailTimer = null;
  function scheduleDetail() {
    clearTimeout(detailTimer);
    detailTimer = setTimeout(loadDetail, 150);
  }

  async function act(action, body, okKey) {
    const id = state.selected;
    try {
      const r = await api("POST", `/api/work-orders/${id}/${action}`, body);
      EC.toast(t(okKey || "wo.done", { action: tr("woaction", action.replace("-", "_")) }), "ok");
      if (r && r.new_anomalies && r.new_anomalies.length) EC.toast(t("wo.new_anomalies", { n: r.new_anomalies.length }), "warn");
      state.candidates = null;
      await loadDetail();
      scheduleList();
      return r;
    } catch (e) { EC.showError(e); return null; }
  }

  function section(titleKey, ...children) {
    return h("section", { class: "dsec" }, h("h3", {}, t(titleKey)), ...children);
  }

  function renderDetail() {
    const box = $("orders");
    const d = state.detail;
    if (!box) return;
    if (!d) { box.replaceChildren(h("p", { class: "empty" }, t("wo.loading"))); return; }
    const allowed = d.allowed_actions || [];
    // What the operator typed survives a live reload of the detail.
    const kept = keep(box, d.id);
    const head = h("div", { class: "dhead wo-head" },
      h("div", { class: "dtitle" }, raw(d.number, "mono"), " ", woStatus(d.status), " ",
        h("strong", {}, raw(d.item_name || d.service_item_code))),
      h("div", { class: "muted" }, raw(d.resident_name), " · ", raw(d.district_name || d.district_code), " · ",
        t("wo.created"), " ", EC.fmtTime(d.created_at), " ", t("detail.by"), " ", raw(d.created_by)));
    const nav = h("div", { class: "row" },
      h("button", { class: "ghost small", "data-action": "orders-back", onclick: back }, "← ", t("wo.back")),
      d.alarm_id ? h("button", { class: "small", "data-action": "open-alarm", onclick: () => hooks.selectAlarm(d.alarm_id) }, t("wo.open_alarm")) : null,
      d.hotline_call_id ? h("span", { class: "badge" }, t("wo.from_call", { id: d.hotline_call_id })) : null);
    const info = kv([
      ["wo.source", tr("source", d.source)],
      ["wo.provider", d.provider_name ? raw(d.provider_name) : h("span", { class: "muted" }, t("wo.unassigned"))],
      ["wo.worker", orNone(d.worker_name)],
      ["wo.scheduled", when(d.scheduled_start)],
      ["wo.due", when(d.due_by)],
      ["wo.unit_price", orNone(money(d.unit_price_fen))],
      d.price_fen !== null ? ["wo.price", raw(money(d.price_fen))] : null,
      d.checked_in_at ? ["wo.checked_in", h("span", {}, when(d.checked_in_at), d.check_in && d.check_in.distance_m !== null ? h("span", { class: "muted small" }, " ", t("wo.distance_m", { m: Math.round(d.check_in.distance_m) })) : null)] : null,
      d.checked_out_at ? ["wo.checked_out", when(d.checked_out_at)] : null,
      d.checked_out_at ? ["wo.evv", h("span", { class: d.evv_complete ? "ok" : "bad" }, t(d.evv_complete ? "wo.evv_complete" : "wo.evv_incomplete"))] : null,
      d.payer && d.payer.voucher_fen !== undefined ? ["wo.payer", t("wo.payer_split", { v: (d.payer.voucher_fen / 100).toFixed(2), c: ((d.payer.copay_fen || 0) / 100).toFixed(2) })] : null,
    ]);
    box.replaceChildren(nav, head, info,
      actionsSection(d, allowed),
      anomaliesSection(d), revisitsSection(d, allowed), timelineSection(d));
    box.dataset.order = d.id;
    if (kept) kept();
    const reached = $("rv-reached");
    if (reached) reached.dispatchEvent(new Event("change"));
  }

  function keep(box, id) {
    if (box.dataset.order !== id) return null;
    const values = {};
    box.querySelectorAll("input, select, textarea").forEach((el) => {
      if (!el.id) return;
      values[el.id] = el.type === "radio" || el.type === "checkbox" ? el.checked : el.value;
    });
    return () => {
      for (const [k, v] of Object.entries(values)) {
        const el = document.getElementById(k);
        if (!el) continue;
        if (el.type === "radio" || el.type === "checkbox") el.checked = v; else if (!el.disabled) el.value = v;
      }
    };
  }

  function actionsSection(d, allowed) {
    const parts = [];
    if (allowed.includes("dispatch")) parts.push(dispatchForm(d));
    const blocked = d.verify_blockers && d.verify_blockers.length;
    if (allowed.includes("verify") || blocked) {
      parts.push(h("div", { class: "row" },
        allowed.includes("verify") ? h("button", { class: "primary", "data-action": "wo-verify", disabled: !!blocked, onclick: () => act("verify", {}) }, t("woaction.verify")) : null,
        blocked ? h("span", { class: "muted small", id: "wo-blockers" }, t("wo.blocked"), " ", d.verify_blockers.map((b) => tr("wrule", b)).join("; ")) : null));
    }
    if (allowed.includes("cancel")) {
      parts.push(h("form", { class: "row", onsubmit: (ev) => {
        ev.preventDefault();
        const reason = $("wo-cancel-reason").value.trim();
        if (!reason) { $("wo-cancel-reason").focus(); EC.toast(t("wo.reason_needed"), "warn"); return; }
        act("cancel", { reason });
      } }, h("input", { id: "wo-cancel-reason", maxlength: "500", placeholder: t("wo.cancel_reason"), "aria-label": t("wo.cancel_reason") }),
      h("button", { type: "submit", class: "danger", "data-action": "wo-cancel" }, t("woaction.cancel"))));
    }
    if (!parts.length) {
      const key = DONE.includes(d.status) ? "wo.no_actions_done" : d.status === "checked_out" ? "wo.awaiting_verification" : "wo.no_actions";
      parts.push(h("p", { class: "muted small" }, t(key)));
    }
    return section("wo.actions", ...parts);
  }

  function dispatchForm(d) {
    const cands = state.candidates || [];
    if (!cands.length) return h("p", { class: "muted" }, t("wo.no_contracted"));
    const prov = h("select", { id: "wo-provider", "aria-label": t("wo.provider"), onchange: () => loadWorkers(Number(prov.value)) },
      cands.map((p) => h("option", { value: p.id, "data-raw": "", selected: p.id === d.provider_id }, `${p.name} · ${money(p.unit_price_fen)}`)));
    const pid = d.provider_id && cands.some((p) => p.id === d.provider_id) ? d.provider_id : cands[0].id;
    const workers = state.workers.get(pid);
    if (!workers) loadWorkers(pid);
    const wsel = h("select", { id: "wo-worker", "aria-label": t("wo.worker") },
      h("option", { value: "" }, t("wo.worker_any")),
      (workers || []).filter((w) => w.active).map((w) => h("option", { value: w.id, "data-raw": "", selected: w.id === d.worker_id }, w.name)));
    return h("form", { class: "row dispatch-form", onsubmit: (ev) => {
      ev.preventDefault();
      const body = { provider_id: Number(prov.value) };
      if (wsel.value) body.worker_id = Number(wsel.value);
      act("dispatch", body);
    } }, prov, wsel, h("button", { type: "submit", class: "primary", "data-action": "wo-dispatch" },
      t(d.status === "dispatched" ? "wo.redispatch" : "woaction.dispatch")));
  }

  async function loadWorkers(pid) {
    if (state.workers.has(pid)) { renderDetail(); return; }
    try {
      state.workers.set(pid, await api("GET", `/api/providers/${pid}/workers`));
    } catch (e) {
      state.workers.set(pid, []);
      if (e.status !== 403) EC.showError(e);
    }
    if (state.detail) renderDetail();
  }

  function anomaliesSection(d) {
    const list = d.anomalies || [];
    if (!list.length) return h("span");
    return section("wo.anomalies", h("ul", { class: "events" }, list.map((a) => h("li", { class: `sev-${a.severity}` },
      h("span", { class: `badge sev-${a.severity}` }, tr("severity", a.severity)), " ",
      trNode("wrule", a.rule_code), " ", h("span", { class: "muted small" }, tr("wdecision", a.status), " · ", EC.fmtTime(a.detected_at))))));
  }

  function revisitsSection(d, allowed) {
    const list = d.revisits || [];
    const parts = [];
    if (list.length) {
      parts.push(h("table", { class: "offers revisits" },
        h("thead", {}, h("tr", {}, ["wo.rv_due", "wo.rv_done", "wo.rv_channel", "wo.rv_reached", "wo.rv_confirmed", "wo.rv_satisfaction", "wo.rv_notes"].map((k) => h("th", {}, t(k))))),
        h("tbody", {}, list.map((r) => h("tr", { dataset: { revisit: r.id } },
          h("td", {}, when(r.due_at)),
          h("td", {}, r.done_at ? when(r.done_at) : h("span", { class: "badge warn" }, t("wo.rv_pending"))),
          h("td", {}, r.channel ? tr("channel", r.channel) : ""),
          h("td", {}, yesNo(r.reached)),
          h("td", {}, yesNo(r.service_confirmed)),
          h("td", { class: "rv-sat" }, r.satisfaction ? tr("sat", r.satisfaction) : ""),
          h("td", {}, r.comment ? raw(r.comment) : ""))))));
    } else if (d.revisit_required) {
      parts.push(h("p", { class: "muted" }, t("wo.rv_required")));
    }
    // The form is open while a revisit is due (or none was made); after that, on request.
    const due = !list.length || list.some((r) => !r.done_at);
    if (allowed.includes("revisit")) {
      parts.push(due || state.moreRevisit === d.id ? revisitForm()
        : h("button", { class: "small", "data-action": "wo-revisit-again", onclick: () => { state.moreRevisit = d.id; renderDetail(); } }, t("wo.rv_again")));
    }
    if (!parts.length) return h("span");
    return section("wo.revisits", ...parts);
  }
  function yesNo(v) { return v === null || v === undefined ? "" : t(v ? "common.yes" : "common.no"); }

  function revisitForm() {
    const sats = state.meta.satisfaction;
    const reached = h("select", { id: "rv-reached", "aria-label": t("wo.rv_reached"), onchange: () => {
      const on = reached.value === "yes";
      form.querySelectorAll(".rv-when-reached input, .rv-when-reached select").forEach((el) => { el.disabled = !on; });
    } }, h("option", { value: "yes" }, t("wo.rv_reached_yes")), h("option", { value: "no" }, t("wo.rv_reached_no")));
    const form = h("form", { class: "stack revisit-form", onsubmit: (ev) => {
      ev.preventDefault();
      const body = { channel: $("rv-channel").value, reached: reached.value === "yes" };
      if (body.reached) {
        body.service_confirmed = $("rv-confirmed").value === "yes";
        const s = form.querySelector("input[name=rv-sat]:checked");
        if (!s) { EC.toast(t("wo.rv_pick_satisfaction"), "warn"); return; }
        body.satisfaction = Number(s.value);
      }
      const c = $("rv-comment").value.trim();
      if (c) body.comment = c;
      submitRevisit(body);
    } },
    h("h4", {}, t("wo.rv_record")),
    h("div", { class: "row" },
      h("select", { id: "rv-channel", "aria-label": t("wo.rv_channel") }, state.meta.channels.map((c) => h("option", { value: c }, tr("channel", c)))),
      reached),
    h("div", { class: "row rv-when-reached" },
      h("label", {}, t("wo.rv_confirmed"), " ", h("select", { id: "rv-confirmed" },
        h("option", { value: "yes" }, t("common.yes")), h("option", { value: "no" }, t("wo.rv_denied"))))),
    h("div", { class: "row rv-when-reached sat-row", role: "radiogroup", "aria-label": t("wo.rv_satisfaction") },
      sats.map((n) => h("label", { class: "sat" }, h("input", { type: "radio", name: "rv-sat", id: `rv-sat-${n}`, value: n }), " ", tr("sat", n)))),
    h("textarea", { id: "rv-comment", rows: "2", maxlength: "2000", placeholder: t("wo.rv_comment") }),
    h("button", { type: "submit", class: "primary", "data-action": "wo-revisit" }, t("wo.rv_save")));
    return form;
  }

  async function submitRevisit(body) {
    try {
      const r = await api("POST", `/api/work-orders/${state.selected}/revisits`, body);
      EC.toast(t("wo.rv_saved"), "ok");
      if (r.new_anomalies && r.new_anomalies.length) EC.toast(t("wo.new_anomalies", { n: r.new_anomalies.length }), "warn");
      const box = $("orders");
      delete box.dataset.order; // a fresh, empty form
      state.moreRevisit = null;
      await loadDetail();
    } catch (e) { EC.showError(e); }
  }

  function timelineSection(d) {
    const items = (d.timeline || []).slice().reverse();
    return section("detail.timeline", h("ol", { class: "timeline" }, items.map((e) => {
      const det = e.detail || {};
      const text = det.reason || det.note || null;
      return h("li", {},
        h("span", { class: "mono" }, EC.fmtTime(e.at)), " ",
        h("strong", {}, trNode("woaction", e.action)), " ",
        e.to_status && e.from_status && e.from_status !== e.to_status
          ? h("span", { class: "muted small" }, tr("wostatus", e.from_status), " → ", tr("wostatus", e.to_status), " ") : null,
        h("span", { class: "muted" }, t("detail.by"), " ", raw(e.actor)),
        text ? h("div", { class: "tl-text" }, raw(text)) : null);
    })));
  }

  /* ------------------------------------------------------------ live */
  function onMessage(msg) {
    if (msg.type !== "work_order") return;
    const o = msg.work_order;
    // The row changes at once; names and filters follow from the API a moment later.
    const row = state.orders.find((x) => x.id === o.id);
    if (row) {
      if (row.provider_id !== o.provider_id) {
        const p = state.providers.find((x) => x.id === o.provider_id);
        row.provider_name = p ? p.name : null;
      }
      if (row.worker_id !== o.worker_id) row.worker_name = null;
      Object.assign(row, o);
    }
    if (hooks.isShown("orders") && !state.selected) renderList();
    scheduleList(); // the list if shown, and the tab's badge either way
    if (o.id === state.selected) scheduleDetail();
  }

  /* ------------------------------------------------------------ 12349 call intake */
  function newCall() {
    state.call = { started_at: new Date(EC.now()).toISOString(), resident: null, results: null, id: null, type: "referral" };
  }

  async function findResident(q) {
    try {
      state.call.results = await api("GET", `/api/console/residents?q=${encodeURIComponent(q)}`);
      renderCall();
    } catch (e) { EC.showError(e); }
  }

  function residentLine(r) {
    const age = EC.yearsSince(r.birth_date);
    const place = r.facility_name && r.setting === "facility" ? [raw(r.facility_name), r.room ? [" ", t("place.room_label"), " ", raw(r.room)] : null]
      : r.home_bed_id ? t("place.home_bed", { id: r.home_bed_id }) : t("call.at_home");
    return [raw(r.name, "rname-s"), " ", h("span", { class: "muted small" },
      age === null ? "" : t("res.years", { n: age }), " ", tr("gender", r.gender), " · ", place,
      r.district_name ? [" · ", raw(r.district_name)] : null, " · #", raw(r.id))];
  }

  function callField(labelKey, control) {
    return h("label", { class: "field" }, h("span", {}, t(labelKey)), control);
  }

  function renderCall() {
    const box = $("call");
    if (!box || !state.meta) return;
    if (!state.meta.may_take_calls) { box.replaceChildren(h("p", { class: "muted" }, t("error.forbidden"))); return; }
    if (!state.call) newCall();
    const c = state.call;
    const kept = keepCall(box);
    const types = state.meta.request_types;
    const typeSel = h("div", { class: "row reqtypes", role: "radiogroup", "aria-label": t("call.type") }, types.map((ty) => h("label", { class: `reqtype rt-${ty}` },
      h("input", { type: "radio", name: "call-type", value: ty, id: `call-type-${ty}`, checked: c.type === ty, disabled: !!c.id,
        onchange: () => { c.type = ty; renderCall(); } }), " ", tr("reqtype", ty))));
    let resident;
    if (c.resident) {
      resident = h("div", { class: "row chosen", id: "call-resident" }, residentLine(c.resident),
        c.id ? null : h("button", { type: "button", class: "ghost small", "data-action": "call-change-resident", onclick: () => { c.resident = null; renderCall(); } }, t("call.change")));
    } else {
      const q = h("input", { id: "call-q", type: "search", maxlength: "100", placeholder: t("call.search_placeholder"), "aria-label": t("call.resident"),
        onkeydown: (ev) => { if (ev.key === "Enter") { ev.preventDefault(); if (q.value.trim()) findResident(q.value.trim()); } } });
      resident = h("div", { class: "stack" },
        h("div", { class: "row" }, q, h("button", { type: "button", "data-action": "call-find", onclick: () => { if (q.value.trim()) findResident(q.value.trim()); } }, t("call.find"))),
        c.results === null ? null : c.results.length ? h("ul", { class: "results", id: "call-results" }, c.results.map((r) => h("li", { class: "clickable", dataset: { resident: r.id },
          onclick: () => { c.resident = r; c.results = null; renderCall(); } }, residentLine(r))))
          : h("p", { class: "muted" }, t("call.no_match")));
    }
    const extra = [];
    if (c.type === "referral") {
      extra.push(callField("call.service", h("select", { id: "call-item", required: true },
        h("option", { value: "" }, t("call.pick_service")),
        state.items.filter((i) => i.active).map((i) => h("option", { value: i.code, "data-raw": "" }, i.name_zh)))));
      extra.push(callField("call.scheduled", h("input", { id: "call-when", type: "datetime-local" })));
    } else if (c.type === "complaint") {
      extra.push(callField("call.severity", h("select", { id: "call-severity" }, ["red", "orange", "yellow"].map((s) => h("option", { value: s }, tr("complaint_sev", s))))));
      extra.push(callField("call.provider", h("select", { id: "call-provider" }, h("option", { value: "" }, t("call.provider_unknown")),
        state.providers.map((p) => h("option", { value: p.id, "data-raw": "" }, p.name)))));
    } else if (c.type === "emergency") {
      const open = hooks.openAlarms().filter((a) => a.category === "alarm");
      const mine = c.resident ? open.filter((a) => a.resident_id === c.resident.id) : [];
      const list = mine.length ? mine : open;
      extra.push(list.length ? callField("call.alarm", h("select", { id: "call-alarm" }, list.map((a) => h("option", { value: a.id },
        tr("kind", a.kind), " · ", a.resident_name || a.device_id || "", " · ", EC.fmtTime(a.received_at)))))
        : h("p", { class: "bad", id: "call-no-alarm" }, t("call.no_open_alarm")));
      extra.push(h("p", { class: "muted small" }, t("call.emergency_hint")));
    } else {
      extra.push(h("p", { class: "muted small" }, t("call.consultation_hint")));
    }
    const done = c.id !== null;
    const submitKey = done ? "call.retry" : c.type === "referral" ? "call.submit_order" : "call.submit";
    box.replaceChildren(
      h("form", { id: "call-form", class: "stack call-form", oninput: () => { c.touched = true; },
        onsubmit: (ev) => { ev.preventDefault(); submitCall(); } },
        h("div", { class: "row" }, h("strong", {}, t("call.started", { at: EC.fmtTime(c.started_at) })),
          h("button", { type: "button", class: "ghost small", "data-action": "call-new", onclick: () => { newCall(); delete box.dataset.kept; renderCall(); } }, t("call.new"))),
        callField("call.caller", h("input", { id: "call-caller", type: "tel", maxlength: "40", autocomplete: "off", disabled: done, placeholder: t("call.caller_placeholder") })),
        h("div", { class: "field" }, h("span", {}, t("call.type")), typeSel),
        h("div", { class: "field" }, h("span", {}, t("call.resident")), resident),
        ...extra,
        callField("call.note", h("textarea", { id: "call-note", rows: "3", maxlength: "4000", disabled: done, placeholder: t("call.note_placeholder") })),
        done ? h("p", { class: "warn-text" }, t("call.recorded_no_order", { id: c.id })) : null,
        h("button", { type: "submit", class: "primary", "data-action": "call-submit" }, t(submitKey))),
      recentCallsSection());
    box.dataset.kept = "1";
    if (kept) kept();
  }

  function keepCall(box) {
    if (!box.dataset.kept) return null;
    const values = {};
    box.querySelectorAll("input:not([type=radio]), select, textarea").forEach((el) => { if (el.id) values[el.id] = el.value; });
    return () => {
      for (const [k, v] of Object.entries(values)) {
        const el = document.getElementById(k);
        if (!el || el.disabled) continue;
        if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === v)) continue;
        el.value = v;
      }
    };
  }

  function localToIso(v) {
    if (!v) return null;
    const d = new Date(v); // datetime-local is the workstation's local time
    return Number.isNaN(d.getTime()) ? null : d.toISOString();
  }

  async function submitCall() {
    const c = state.call;
    const need = (cond, key, focusId) => {
      if (cond) return true;
      EC.toast(t(key), "warn");
      if (focusId && $(focusId)) $(focusId).focus();
      return false;
    };
    if (["referral", "complaint"].includes(c.type) && !need(c.resident, "call.need_resident", "call-q")) return;
    if (c.type === "referral" && !need($("call-item").value, "call.need_service", "call-item")) return;
    if (c.type === "emergency" && !need($("call-alarm") && $("call-alarm").value, "call.no_open_alarm")) return;
    try {
      if (c.id === null) {
        const body = {
          started_at: c.started_at, answered_at: c.started_at, ended_at: new Date(EC.now()).toISOString(),
          agent: EC.session.username, request_type: c.type,
        };
        const caller = $("call-caller").value.trim();
        if (caller) body.caller = caller;
        if (c.resident) body.resident_id = c.resident.id;
        const note = $("call-note").value.trim();
        if (note) body.note = note;
        if (c.type === "emergency") body.alarm_id = $("call-alarm").value;
        const made = await api("POST", "/api/hotline/calls", body);
        c.id = made.id;
      }
      // The call is on record; what follows it may fail (a deceased resident, no item) and
      // be retried without recording the call twice.
      if (c.type === "referral") {
        const body = { service_item_code: $("call-item").value };
        const at = localToIso($("call-when").value);
        if (at) body.scheduled_start = at;
        const order = await api("POST", `/api/hotline/calls/${c.id}/work-order`, body);
        EC.toast(t("call.order_created", { number: order.number }), "ok");
        newCall();
        $("call").dataset.kept = "";
        delete $("call").dataset.kept;
        await open(order.id);
        return;
      }
      if (c.type === "complaint") {
        const body = { hotline_call_id: c.id, resident_id: c.resident.id, severity: $("call-severity").value };
        if ($("call-provider").value) body.provider_id = Number($("call-provider").value);
        await api("POST", "/api/complaints", body);
        EC.toast(t("call.complaint_created"), "ok");
      } else {
        EC.toast(t("call.recorded"), "ok");
      }
      newCall();
      delete $("call").dataset.kept;
      renderCall();
      loadRecentCalls();
    } catch (e) {
      EC.showError(e);
      renderCall();
    }
  }

  function recentCallsSection() {
    const list = state.recentCalls;
    return h("section", { class: "dsec" }, h("h3", {}, t("call.recent")),
      list.length ? h("ul", { class: "events calls" }, list.slice(0, 20).map((c) => h("li", { dataset: { call: c.id } },
        h("span", { class: "mono" }, EC.fmtTime(c.started_at)), " ", h("span", { class: `badge rt-${c.request_type}` }, tr("reqtype", c.request_type)), " ",
        c.caller ? raw(c.caller, "mono") : null, " ", c.resident_id ? h("span", { class: "muted small" }, t("call.resident_no", { id: c.resident_id })) : null,
        c.agent ? h("span", { class: "muted small" }, " · ", raw(c.agent)) : null)))
        : h("p", { class: "muted" }, t("common.none")));
  }

  async function loadRecentCalls() {
    if (!state.meta.may_take_calls) return;
    try {
      const since = new Date(EC.now() - 24 * 3600 * 1000).toISOString();
      state.recentCalls = await api("GET", `/api/hotline/calls?from=${encodeURIComponent(since)}`);
    } catch (e) {
      state.recentCalls = [];
      if (e.status !== 403) EC.showError(e);
    }
    if (hooks.isShown("call")) renderCall();
  }

  /* ------------------------------------------------------------ tabs */
  async function show(name) {
    await ensureMeta();
    if (name === "orders") {
      if (state.selected) await loadDetail(); else await loadList();
    } else if (name === "call") {
      // A form nobody has typed into belongs to the next call: its clock starts now.
      if (state.call && !state.call.touched && !state.call.resident && state.call.id === null) {
        newCall();
        delete $("call").dataset.kept;
      }
      renderCall();
      await loadRecentCalls();
    }
  }

  function render() {
    renderBadge(); // applyI18n has just rewritten the tab's label
    if (hooks.isShown("orders")) { if (state.selected) renderDetail(); else renderList(); }
    if (hooks.isShown("call")) renderCall();
  }

  function reset() {
    Object.assign(state, { meta: null, orders: [], selected: null, detail: null, candidates: null, call: null, recentCalls: [], toDispatch: 0 });
    state.filters = { status: "unfinished", provider: "", district: "", item: "" };
    renderBadge();
    state.workers.clear();
  }

  // Orders linked to one alarm (its follow-ups), for the alarm's detail.
  async function forAlarm(alarmId) {
    const x = await api("GET", `/api/console/work-orders?alarm_id=${encodeURIComponent(alarmId)}`);
    return x.orders;
  }

  return { init, show, render, reset, onMessage, open, forAlarm, woStatus, ensureMeta,
    get items() { return state.items; }, resync: scheduleList };
})();
