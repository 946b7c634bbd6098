/* The duty operator's console: live queue, alarm detail and lifecycle actions, device
 * health, a map drawn from stored coordinates, shift handover, and (orders.js) the
 * work-order tab and 12349 call intake. */
"use strict";

(() => {
  const { t, tr, trNode, h, raw, api } = EC;
  const $ = (id) => document.getElementById(id);

  // The state machine, the vocabularies and the acknowledgement targets are the server's:
  // GET /api/console/meta once per session, and allowed_actions on every alarm.
  const REVEAL_REASONS = ["reveal.reason_alarm", "reveal.reason_family", "reveal.reason_dispatch"];

  const state = {
    meta: null, // GET /api/console/meta
    alarms: new Map(), // id -> AlarmSummary (open ones)
    extras: new Map(), // id -> {lat, lon, holder, holder_kind}
    facilities: new Map(),
    lowBatteryPct: 20,
    selected: null,
    detail: null,
    detailOrders: [], // work orders linked to the alarm on screen (its follow-ups)
    revealed: null, // {resident_id, data}: only for the alarm on screen
    filterFacility: null,
    tab: "detail",
    shift: false,
    live: null,
    connState: "connecting",
    healthFacility: null,
  };

  /* ------------------------------------------------------------ queue */
  function sorted() {
    return [...state.alarms.values()]
      .filter((a) => state.filterFacility === null || a.facility_id === state.filterFacility)
      .sort((a, b) => a.priority - b.priority
        // Triage orders only within a band (the server's QUEUE_ORDER): unscored = 0.
        || (a.triage_p_false ?? 0) - (b.triage_p_false ?? 0)
        || Date.parse(a.received_at) - Date.parse(b.received_at));
  }

  // The triage model's estimate and why (orders the queue within a band; never a priority).
  function triageNode(a) {
    if (a.triage_p_false === null || a.triage_p_false === undefined) return null;
    const why = (a.triage_reasons || []).map((r) => r.text).join("; ");
    return h("div", { class: "muted triage", "data-p-false": a.triage_p_false },
      `P(false alarm) ${Math.round(a.triage_p_false * 100)} % — ${why}`);
  }

  function placeNodes(a) {
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

  function kindNodes(a) {
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

  function residentNode(a) {
    if (a.resident_name) return raw(a.resident_name);
    if (a.device_id) return h("span", { class: "muted" }, t("queue.device"), " ", raw(a.device_id));
    return h("span", { class: "muted" }, t("common.none"));
  }

  function renderQueue() {
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

  function tick() {
    document.querySelectorAll("[data-since]").forEach((el) => {
      el.textContent = EC.fmtAge(EC.ageSeconds(el.dataset.since));
    });
    renderCounters();
    renderConn();
  }

  /* ------------------------------------------------------------ alerting */
  function unackedAlarms() {
    return [...state.alarms.values()].filter((a) => a.status === "raised" && a.category === "alarm");
  }
  function alertLoop() {
    const ringing = unackedAlarms().length > 0;
    document.body.dataset.alerting = ringing ? "true" : "false";
    if (ringing && state.shift) EC.sound.beep(a_priorityFreq(), 160, 3);
  }
  function a_priorityFreq() {
    const top = unackedAlarms().reduce((m, a) => Math.min(m, a.priority), 9);
    return top === 1 ? 988 : 740;
  }
  function flash() {
    document.body.classList.remove("flash");
    void document.body.offsetWidth; // restart the animation
    document.body.classList.add("flash");
    setTimeout(() => document.body.classList.remove("flash"), 3000);
  }

  /* ------------------------------------------------------------ live updates */
  let extrasTimer = null;
  function scheduleExtras() {
    clearTimeout(extrasTimer);
    extrasTimer = setTimeout(loadExtras, 250);
  }
  async function loadExtras() {
    try {
      const x = await api("GET", "/api/console/open");
      EC.setServerNow(x.now);
      if (x.low_battery_pct) state.lowBatteryPct = x.low_battery_pct;
      state.extras = new Map(x.alarms.map((e) => [e.id, e]));
      renderQueue();
      if (state.tab === "map") renderMap();
      if (state.tab === "handover") renderHandoverOpen();
    } catch (e) { EC.showError(e); }
  }

  // The alarm's own policy's target (facility policy, else its area's), as the server has it.
  function ackTarget(a) {
    const t = state.meta.ack_target_s;
    return t.facility[a.facility_id] ?? t.area[a.area] ?? t.default;
  }

  function upsert(a) {
    if (state.meta.open_statuses.includes(a.status)) state.alarms.set(a.id, a);
    else state.alarms.delete(a.id);
  }

  let detailTimer = null;
  function scheduleDetail() {
    clearTimeout(detailTimer);
    detailTimer = setTimeout(loadDetail, 150);
  }

  function onMessage(msg) {
    if (msg.type === "work_order") {
      ECOrders.onMessage(msg);
      if (msg.work_order.alarm_id && msg.work_order.alarm_id === state.selected) scheduleDetail();
      return;
    }
    if (msg.type === "alarm" || msg.type === "offer") {
      const a = msg.alarm;
      const isNew = msg.type === "alarm" && msg.event === "raised" && !state.alarms.has(a.id);
      upsert(a);
      renderQueue();
      scheduleExtras();
      if (a.id === state.selected) scheduleDetail();
      if (state.tab === "map") renderMap();
      if (isNew && a.category === "alarm") {
        flash();
        if (state.shift) EC.sound.beep(a.priority === 1 ? 988 : 740, 160, 3);
        document.body.dataset.alerting = "true";
      }
      if (msg.type === "alarm" && ["cleared", "merged"].includes(msg.event) && state.tab === "health") renderHealth();
    } else if (msg.type === "supervisor") {
      upsert(msg.alarm);
      renderQueue();
      EC.toast(t("toast.supervisor", { kind: tr("kind", msg.alarm.kind) }), "warn");
    }
  }

  async function resync() {
    if (!state.meta) state.meta = await api("GET", "/api/console/meta");
    await ECOrders.ensureMeta(); // the service catalogue, for a close's follow-up
    const [list, facs] = await Promise.all([
      api("GET", "/api/alarms?status=open&limit=1000"),
      api("GET", "/api/facilities"),
    ]);
    state.alarms = new Map();
    list.forEach(upsert);
    state.facilities = new Map(facs.map((f) => [f.id, f]));
    await loadExtras();
    renderAll();
    if (state.selected) loadDetail();
    ECOrders.resync();
  }

  function renderConn() {
    const s = state.connState;
    const el = $("conn");
    el.dataset.state = s;
    el.textContent = t(`conn.${s}`);
    const banner = $("banner");
    const down = s === "down" || s === "reconnecting";
    banner.hidden = !down;
    if (down) {
      const at = state.live && state.live.retryAt;
      const secs = at ? Math.max(0, Math.ceil((at - Date.now()) / 1000)) : 0;
      $("banner-text").textContent = s === "down" ? t("conn.banner", { s: secs }) : t("conn.banner_trying");
    }
  }

  /* ------------------------------------------------------------ detail */
  function select(id) {
    if (state.selected !== id) state.revealed = null;
    state.selected = id;
    showTab("detail");
    renderQueue();
    const row = document.querySelector(`#queue-body tr[data-id="${id}"]`);
    if (row) row.scrollIntoView({ block: "nearest" });
    loadDetail();
  }

  async function loadDetail() {
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

  async function act(action, body) {
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

  const ACTIONS = {
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

  function renderDetail() {
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

  /* ------------------------------------------------------------ map (no tile server) */
  const SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v); else el.setAttribute(k, v);
    }
    kids.forEach((k) => el.append(k instanceof Node ? k : document.createTextNode(String(k))));
    return el;
  }
  function renderMap() {
    const map = $("map");
    const W = 640, H = 440, PAD = 70;
    const facs = [...state.facilities.values()].filter((f) => f.lat !== null && f.lon !== null);
    const pts = [];
    for (const a of state.alarms.values()) {
      const x = state.extras.get(a.id);
      if (x && x.lat !== null && x.lon !== null) pts.push({ a, lat: x.lat, lon: x.lon });
    }
    const all = [...facs.map((f) => [f.lat, f.lon]), ...pts.map((p) => [p.lat, p.lon])];
    map.replaceChildren(svg("rect", { x: 0, y: 0, width: W, height: H, class: "map-bg" }));
    if (!all.length) {
      map.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "map-empty" }, t("map.empty")));
      return;
    }
    let [minLat, maxLat, minLon, maxLon] = [90, -90, 180, -180];
    for (const [la, lo] of all) {
      minLat = Math.min(minLat, la); maxLat = Math.max(maxLat, la);
      minLon = Math.min(minLon, lo); maxLon = Math.max(maxLon, lo);
    }
    const midLat = (minLat + maxLat) / 2;
    const kx = Math.cos((midLat * Math.PI) / 180); // equirectangular, true at the middle
    let spanX = Math.max((maxLon - minLon) * kx, 0.02), spanY = Math.max(maxLat - minLat, 0.02);
    const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
    const cx = (minLon + maxLon) / 2, cy = midLat;
    const X = (lon) => W / 2 + (lon - cx) * kx * scale;
    const Y = (lat) => H / 2 - (lat - cy) * scale;
    // A graticule so distances can be judged: a step of 1, 2 or 5 x 10^n degrees.
    const span = Math.max(spanX / kx, spanY);
    const mag = 10 ** Math.floor(Math.log10(span / 4));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= 6) || mag * 10;
    const g = svg("g", { class: "grid" });
    const lon0 = cx - (W / 2) / (kx * scale), lon1 = cx + (W / 2) / (kx * scale);
    const lat0 = cy - (H / 2) / scale, lat1 = cy + (H / 2) / scale;
    const dec = Math.max(0, -Math.floor(Math.log10(step)));
    for (let lo = Math.ceil(lon0 / step) * step; lo <= lon1; lo += step) {
      g.append(svg("line", { x1: X(lo), x2: X(lo), y1: 0, y2: H }));
      if (X(lo) < W - 40) g.append(svg("text", { x: X(lo) + 3, y: H - 4 }, `${lo.toFixed(dec)}°`));
    }
    for (let la = Math.ceil(lat0 / step) * step; la <= lat1; la += step) {
      g.append(svg("line", { x1: 0, x2: W, y1: Y(la), y2: Y(la) }));
      g.append(svg("text", { x: 3, y: Y(la) - 3 }, `${la.toFixed(dec)}°`));
    }
    map.append(g);
    const facAt = new Set(facs.map((f) => `${f.lat.toFixed(5)},${f.lon.toFixed(5)}`));
    const labels = [];
    for (const f of facs) {
      const x = X(f.lon), y = Y(f.lat);
      const bad = f.devices_offline > 0 || f.cameras_offline > 0;
      map.append(svg("g", { class: `fac${bad ? " bad" : ""}`, "data-facility": f.id, onclick: () => openFacility(f.id) },
        svg("rect", { x: x - 6, y: y - 6, width: 12, height: 12, rx: 2 })));
      // Names go under the square, drawn last so no alarm dot covers them.
      labels.push(svg("text", { x, y: y + 34, "text-anchor": x < 80 ? "start" : x > W - 80 ? "end" : "middle",
        class: "fac-label", "data-raw": "", onclick: () => openFacility(f.id) }, f.name));
    }
    // Alarms at one place sit on a ring around it (around the facility's square when
    // they are at a facility) so each stays visible and clickable.
    const byPlace = new Map();
    for (const p of pts) {
      const key = `${p.lat.toFixed(5)},${p.lon.toFixed(5)}`;
      if (!byPlace.has(key)) byPlace.set(key, []);
      byPlace.get(key).push(p);
    }
    for (const [key, group] of byPlace.entries()) {
      const ring = facAt.has(key) || group.length > 1 ? 17 : 0;
      group.forEach((p, i) => {
        const ang = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(group.length, 1);
        const x = X(p.lon) + ring * Math.cos(ang), y = Y(p.lat) + ring * Math.sin(ang);
        const a = p.a;
        map.append(svg("g", { class: `alarm-pt p${a.priority} st-${a.status}${a.id === state.selected ? " selected" : ""}`, "data-id": a.id, onclick: () => select(a.id) },
          svg("circle", { cx: x, cy: y, r: 8 }),
          svg("title", {}, tr("kind", a.kind))));
      });
    }
    labels.forEach((l) => map.append(l));
  }

  /* ------------------------------------------------------------ health */
  async function renderHealth() {
    const box = $("health");
    try {
      if (state.healthFacility !== null) return await renderFacility(state.healthFacility);
      const [sum, facs] = await Promise.all([api("GET", "/api/health/summary"), api("GET", "/api/facilities")]);
      state.facilities = new Map(facs.map((f) => [f.id, f]));
      const per = new Map(sum.facilities.map((r) => [r.facility_id, r]));
      box.replaceChildren(
        h("div", { class: "tiles" },
          tile("health.devices_online", `${sum.devices.online}/${sum.devices.total}`),
          tile("health.devices_offline", sum.devices.offline, sum.devices.offline > 0),
          tile("health.low_battery", sum.devices.low_battery, sum.devices.low_battery > 0),
          tile("health.cameras_offline", `${sum.cameras.offline}/${sum.cameras.total}`, sum.cameras.offline > 0)),
        h("table", { class: "health-table" },
          h("thead", {}, h("tr", {}, ["health.facility", "health.devices_offline", "health.low_battery", "health.cameras_offline", "health.open_alarms"].map((k) => h("th", {}, t(k))))),
          h("tbody", {}, facs.map((f) => {
            const r = per.get(f.id) || {};
            return h("tr", { class: "clickable", "data-facility": f.id, onclick: () => openFacility(f.id) },
              h("td", {}, raw(f.name)),
              h("td", { class: r.devices_offline ? "bad" : "" }, `${r.devices_offline || 0}/${r.devices_total || 0}`),
              h("td", { class: r.low_battery ? "bad" : "" }, r.low_battery || 0),
              h("td", { class: r.cameras_offline ? "bad" : "" }, `${r.cameras_offline || 0}/${r.cameras_total || 0}`),
              h("td", {}, f.open_alarms));
          }))));
    } catch (e) { EC.showError(e); }
  }
  function tile(key, value, bad) {
    return h("div", { class: `tile${bad ? " bad" : ""}` }, h("b", {}, value), h("span", {}, t(key)));
  }
  function openFacility(id) {
    state.healthFacility = id;
    showTab("health");
  }
  async function renderFacility(id) {
    const [f, offline, all, cams, health] = await Promise.all([
      api("GET", `/api/facilities/${id}`),
      api("GET", `/api/devices?facility=${id}&online=false`),
      api("GET", `/api/devices?facility=${id}`),
      api("GET", `/api/cameras?facility=${id}&online=false`),
      api("GET", `/api/devices/health?facility=${id}`),
    ]);
    // Device-health models (issue 9B): a charge due within a day, or likely to drop off.
    const soon = health.filter((d) => (d.hours_to_low !== null && d.hours_to_low <= 24)
      || (d.offline_risk_24h !== null && d.offline_risk_24h >= 0.5)).map((d) => ({ ...d, id: d.device_id }));
    const low = all.filter((d) => d.battery !== null && d.battery < state.lowBatteryPct);
    const devList = (list, extra) => list.length ? h("ul", { class: "devlist" }, list.map((d) => h("li", {},
      raw(d.id, "mono"), " ", trNode("devkind", d.kind), d.room ? h("span", {}, " ", t("place.room_label"), " ", raw(d.room)) : null, " ", extra(d))))
      : h("p", { class: "muted" }, t("common.none"));
    // Devices that never reported are not offline yet (the API counts the same way).
    const reallyOffline = offline.filter((d) => d.last_seen_at);
    $("health").replaceChildren(
      h("div", { class: "row" }, h("button", { class: "ghost small", "data-action": "health-back", onclick: () => { state.healthFacility = null; renderHealth(); } }, "← ", t("health.back")),
        h("h3", {}, raw(f.name)),
        h("button", { class: "small", "data-action": "filter-facility", onclick: () => { state.filterFacility = id; renderAll(); } }, t("health.show_alarms", { n: f.open_alarms }))),
      // replaceChildren would print a null as the word "null": an empty span instead.
      f.phone ? h("p", {}, t("health.phone"), " ", raw(f.phone, "phone")) : h("span"),
      h("h4", {}, t("health.devices_offline"), ` (${reallyOffline.length})`),
      devList(reallyOffline, (d) => h("span", { class: "muted small" }, t("health.last_seen"), " ", d.last_seen_at ? EC.fmtTime(d.last_seen_at) : t("common.none"))),
      h("h4", {}, t("health.low_battery"), ` (${low.length})`),
      devList(low, (d) => h("span", { class: "bad" }, `${d.battery}%`)),
      h("h4", {}, t("health.forecast"), ` (${soon.length})`),
      devList(soon, (d) => h("span", { class: "muted small" }, [
        d.hours_to_low !== null && d.hours_to_low <= 24 ? t("health.to_low", { h: Math.round(d.hours_to_low) }) : null,
        d.offline_risk_24h !== null && d.offline_risk_24h >= 0.5 ? t("health.offline_risk", { p: Math.round(d.offline_risk_24h * 100) }) : null,
      ].filter(Boolean).join(" · "))),
      h("h4", {}, t("health.cameras_offline"), ` (${cams.length})`),
      cams.length ? h("ul", { class: "devlist" }, cams.map((c) => h("li", {}, raw(c.camera_id, "mono"), " ", raw(c.location || ""), " ",
        h("span", { class: "muted small" }, t("health.via"), " ", raw(c.device_id, "mono"))))) : h("p", { class: "muted" }, t("common.none")));
  }

  /* ------------------------------------------------------------ handover */
  function renderHandoverOpen() {
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
  async function renderHandover() {
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

  /* ------------------------------------------------------------ tabs, keys, boot */
  async function showTab(name) {
    state.tab = name;
    document.querySelectorAll("[data-tab]").forEach((b) => b.setAttribute("aria-selected", b.dataset.tab === name ? "true" : "false"));
    document.querySelectorAll("[data-tabpanel]").forEach((p) => { p.hidden = p.dataset.tabpanel !== name; });
    try {
      if (name === "map") renderMap();
      if (name === "health") await renderHealth();
      if (name === "handover") await renderHandover();
      if (name === "orders" || name === "call") await ECOrders.show(name);
    } finally {
      // The tab's content is on screen: what a test waits for instead of a fixed pause.
      if (state.tab === name) document.body.dataset.tabShown = name;
    }
  }

  function renderAll() {
    EC.applyI18n();
    renderQueue();
    renderDetail();
    renderConn();
    renderShift();
    $("whorole").textContent = EC.session ? tr("role", EC.session.role) : "";
    if (state.tab === "map") renderMap();
    if (state.tab === "health") renderHealth();
    if (state.tab === "handover") renderHandover();
    ECOrders.render();
    renderHelp();
  }

  const KEYS = [
    ["↑ ↓ / K J", "help.move"], ["A", "act.acknowledge"], ["D", "act.dispatch"], ["E", "act.escalate"],
    ["O", "act.on_site"], ["R", "act.resolve"], ["C", "act.close"], ["N", "act.note"], ["V", "reveal.button"],
    ["1–6", "help.tabs"], ["?", "help.title"], ["Esc", "common.close"],
  ];
  function renderHelp() {
    $("help-keys").replaceChildren(...KEYS.map(([k, key]) => h("tr", {}, h("th", {}, h("kbd", { "data-raw": "" }, k)), h("td", {}, t(key)))));
  }

  function moveSelection(delta) {
    const rows = sorted();
    if (!rows.length) return;
    let i = rows.findIndex((a) => a.id === state.selected);
    i = i < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, i + delta));
    select(rows[i].id);
  }

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const tag = (ev.target.tagName || "").toLowerCase();
    if (["input", "textarea", "select"].includes(tag)) {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    const k = ev.key;
    const a = state.selected && state.alarms.get(state.selected);
    const run = (action) => { ev.preventDefault(); if (state.detail) ACTIONS[action](); };
    if (k === "ArrowDown" || k === "j") { ev.preventDefault(); moveSelection(1); }
    else if (k === "ArrowUp" || k === "k") { ev.preventDefault(); moveSelection(-1); }
    else if (k === "a") {
      ev.preventDefault();
      // With nothing selected, A takes the most urgent unacknowledged alarm.
      if (!a || a.status !== "raised") {
        const top = sorted().find((x) => x.status === "raised");
        if (!top) return;
        state.selected = top.id;
        state.detail = null;
        renderQueue();
        act("acknowledge");
        return;
      }
      ACTIONS.acknowledge();
    }
    else if (k === "d") run("dispatch");
    else if (k === "e") run("escalate");
    else if (k === "o") run("on-site");
    else if (k === "r") run("resolve");
    else if (k === "c") run("close");
    else if (k === "n") { ev.preventDefault(); const ta = $("note-text"); if (ta) ta.focus(); }
    else if (k === "v") { ev.preventDefault(); const b = document.querySelector("[data-action=reveal]"); if (b) b.click(); }
    else if (["1", "2", "3", "4", "5", "6"].includes(k)) showTab(TABS[Number(k) - 1]);
    else if (k === "?") $("help-dialog").hidden = false;
    else if (k === "Escape") $("help-dialog").hidden = true;
  }

  const TABS = ["detail", "map", "health", "handover", "orders", "call"];

  function renderShift() {
    const b = $("start-shift");
    b.textContent = t(state.shift ? "shift.on" : "shift.start");
    b.classList.toggle("on", state.shift);
    $("sound-hint").hidden = state.shift;
  }
  function startShift() {
    // Called from the click: the only moment a browser lets a page unlock audio.
    EC.sound.unlock();
    state.shift = true;
    document.body.dataset.shift = "on";
    renderShift();
    EC.sound.beep(660, 80, 1);
  }

  function enter() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("whoami").textContent = EC.session.username;
    // /console#orders or #call opens that tab (the demo's printout links there).
    const wanted = location.hash.slice(1);
    if (TABS.includes(wanted)) state.tab = wanted;
    renderAll();
    showTab(state.tab);
    if (state.live) state.live.stop();
    state.live = new EC.Live({
      onMessage, onResync: resync,
      onState: (s) => { state.connState = s; document.body.dataset.conn = s; renderConn(); },
    });
    state.live.start();
  }

  function leave(reasonKey) {
    if (state.live) state.live.stop();
    state.live = null;
    state.meta = null;
    state.alarms.clear();
    state.detail = null;
    state.detailOrders = [];
    state.selected = null;
    state.revealed = null;
    state.shift = false;
    ECOrders.reset();
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-form").querySelector(".login-error").textContent = reasonKey ? t(reasonKey) : "";
    $("username").focus();
  }

  async function boot() {
    ECOrders.init({
      selectAlarm: (id) => select(id),
      showTab,
      isShown: (name) => state.tab === name,
      openAlarms: () => sorted(),
    });
    await EC.loadDicts();
    EC.applyI18n();
    EC.wireLang();
    EC.onLang(() => renderAll());
    EC.onLogout(leave);
    EC.wireLogin($("login-form"), () => {
      // The login click is a user gesture too: unlocking here saves a click for most.
      enter();
    });
    $("start-shift").addEventListener("click", startShift);
    $("logout").addEventListener("click", () => EC.logout());
    $("banner-retry").addEventListener("click", () => state.live && state.live.retryNow());
    $("help").addEventListener("click", () => { $("help-dialog").hidden = false; });
    $("help-close").addEventListener("click", () => { $("help-dialog").hidden = true; });
    document.querySelectorAll("[data-tab]").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
    $("handover-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const ta = $("handover-text");
      const text = ta.value.trim();
      if (!text) return;
      try {
        await api("POST", "/api/console/handover", { text });
        ta.value = "";
        EC.toast(t("handover.saved"), "ok");
        renderHandover();
      } catch (e) { EC.showError(e); }
    });
    document.addEventListener("keydown", onKey);
    setInterval(tick, 1000);
    setInterval(alertLoop, 2000);
    setInterval(() => { if (state.tab === "health" && EC.session) renderHealth(); }, 30000);
    document.body.dataset.ready = "true";
    if (EC.session) enter(); else leave(null);
  }

  boot();
})();
