/* The facility staff page, for a nurse's phone: the alarms sent to this person first,
 * then the facility's other open alarms, each with the resident's essentials and the
 * few actions a responder takes. */
"use strict";

(() => {
  const { t, tr, trNode, h, raw, api } = EC;
  const $ = (id) => document.getElementById(id);
  // Open statuses come from GET /api/console/meta; what this user may do, from the
  // allowed_actions of GET /api/alarms/{id} (narrowed per user by the server).

  const state = {
    meta: null,
    alarms: new Map(),
    details: new Map(), // alarm id -> GET /api/alarms/{id}
    revealed: new Map(), // resident id -> reveal answer, for this page view only
    seenOffers: new Set(),
    live: null,
    connState: "connecting",
    facilityName: "",
  };

  function me() { return EC.session ? EC.session.responder_id : null; }

  function myOffer(id) {
    const d = state.details.get(id);
    if (!d || me() === null) return null;
    const mine = (d.offers || []).filter((o) => o.responder_id === me());
    // The newest offer counts: an earlier one may have expired before this step.
    return mine.length ? mine[mine.length - 1] : null;
  }

  function sortedAlarms() {
    return [...state.alarms.values()].sort((a, b) =>
      a.priority - b.priority || Date.parse(a.received_at) - Date.parse(b.received_at));
  }

  function render() {
    const mine = [], others = [];
    for (const a of sortedAlarms()) {
      const o = myOffer(a.id);
      if (o && ["pending", "accepted"].includes(o.status)) mine.push(a); else others.push(a);
    }
    $("mine").replaceChildren(...mine.map((a) => card(a, true)));
    $("others").replaceChildren(...others.map((a) => card(a, false)));
    $("mine-empty").hidden = mine.length > 0;
    $("others-empty").hidden = others.length > 0;
    const pending = mine.some((a) => { const o = myOffer(a.id); return o && o.status === "pending"; });
    document.body.dataset.pending = pending ? "true" : "false";
  }

  function button(action, key, onclick, cls) {
    return h("button", { class: cls || "", "data-action": action, onclick }, t(key));
  }

  function card(a, mine) {
    const d = state.details.get(a.id);
    const o = myOffer(a.id);
    const r = d && d.resident;
    const actions = [];
    const run = (path, body) => async () => {
      try {
        const updated = await api("POST", `/api/alarms/${a.id}/${path}`, body || {});
        upsert(updated);
        EC.toast(t("toast.done", { action: tr("action", path.replace("-", "_")) }), "ok");
        await loadDetail(a.id);
      } catch (e) { EC.showError(e); }
    };
    // The detail's actions are this user's (the server narrows them: a member of staff may
    // resolve only an alarm they hold, answer only their own offer); a live push carries
    // the state machine's for everyone, so until the detail is read, no buttons.
    const mayDo = d && d.alarm && d.alarm.id === a.id ? d.alarm.allowed_actions || [] : [];
    const allowed = (action) => mayDo.includes(action);
    if (o && o.status === "pending" && allowed("accept")) {
      actions.push(button("accept", "act.accept", run("accept"), "primary big"));
      actions.push(button("decline", "act.decline", run("decline"), "big"));
    }
    if (allowed("acknowledge")) actions.push(button("acknowledge", "act.acknowledge", run("acknowledge"), "primary big"));
    if (allowed("on_site")) actions.push(button("on-site", "act.on_site", run("on-site"), "primary big"));
    if (allowed("resolve")) actions.push(button("resolve", "act.resolve_staff", run("resolve"), "big"));

    const place = a.home_bed_id ? t("place.home_bed", { id: a.home_bed_id })
      : a.room ? h("span", {}, t("place.room_label"), " ", raw(a.room)) : t("common.none");
    const kinds = (a.kinds && a.kinds.length ? a.kinds : [a.kind]);
    const essentials = [];
    if (r) {
      const age = EC.yearsSince(r.birth_date);
      essentials.push(h("div", { class: "rname" }, raw(r.name),
        age !== null ? h("span", { class: "muted" }, " · ", t("res.years", { n: age })) : null,
        r.gender ? h("span", { class: "muted" }, " · ", tr("gender", r.gender)) : null));
      if (r.ability_level) essentials.push(h("div", { class: "small" }, t("res.ability"), ": ", raw(r.ability_level)));
      const rev = state.revealed.get(r.id);
      if (rev) {
        essentials.push(h("div", { class: "revealed small" },
          rev.allergies ? h("div", {}, h("b", {}, t("res.allergies")), ": ", raw(rev.allergies)) : null,
          rev.medical_notes ? h("div", {}, h("b", {}, t("res.medical")), ": ", raw(rev.medical_notes)) : null,
          rev.access_notes ? h("div", {}, h("b", {}, t("res.access")), ": ", raw(rev.access_notes)) : null,
          rev.address ? h("div", {}, h("b", {}, t("res.address")), ": ", raw(rev.address)) : null,
          (rev.contacts || []).length ? h("div", {}, h("b", {}, t("res.contacts")), ": ",
            rev.contacts.map((c, i) => h("span", {}, i ? "; " : "", raw(c.name), " ", h("a", { href: `tel:${c.phone}` }, raw(c.phone))))) : null));
      } else {
        essentials.push(h("button", { class: "ghost small", "data-action": "reveal", onclick: () => reveal(r.id, a.id) }, t("staff.reveal")));
      }
    } else if (d) {
      essentials.push(h("div", { class: "muted small" }, t("detail.no_resident"), a.device_id ? " · " : "", a.device_id ? raw(a.device_id) : ""));
    }
    let offerLine = null;
    if (o) {
      offerLine = h("div", { class: `offer-line o-${o.status}` }, t("staff.offer_to_you"), " ", tr("offer", o.status),
        o.status === "pending" && o.due_at ? h("span", { class: "muted small" }, " · ", t("staff.answer_by", { time: EC.fmtTime(o.due_at) })) : null);
    }
    return h("article", { class: `acard p${a.priority} st-${a.status}${mine ? " mine" : ""}`, dataset: { id: a.id, status: a.status } },
      h("div", { class: "acard-head" },
        h("span", { class: `prio p${a.priority}` }, tr("prio", a.priority)), " ",
        h("strong", {}, kinds.map((k, i) => [i ? " + " : "", trNode("kind", k)])), " ",
        h("span", { class: `status st-${a.status}` }, tr("status", a.status)),
        h("span", { class: "age", dataset: { since: a.received_at } }, EC.fmtAge(EC.ageSeconds(a.received_at)))),
      h("div", { class: "place" }, place),
      offerLine,
      h("div", { class: "essentials" }, essentials),
      actions.length ? h("div", { class: "actions" }, actions) : null);
  }

  async function reveal(residentId, alarmId) {
    try {
      const data = await api("POST", `/api/residents/${residentId}/reveal`,
        { reason: t("reveal.reason_attend"), alarm_id: alarmId });
      state.revealed.set(residentId, data);
      render();
    } catch (e) { EC.showError(e); }
  }

  function upsert(a) {
    if (state.meta.open_statuses.includes(a.status)) state.alarms.set(a.id, a);
    else { state.alarms.delete(a.id); state.details.delete(a.id); }
  }

  const detailTimers = new Map();
  function scheduleDetail(id) {
    clearTimeout(detailTimers.get(id));
    detailTimers.set(id, setTimeout(() => loadDetail(id), 100));
  }
  async function loadDetail(id) {
    try {
      const d = await api("GET", `/api/alarms/${id}`);
      state.details.set(id, d);
      upsert(d.alarm);
      noticeOffers(d.offers || [], d.alarm);
      render();
    } catch (e) {
      if (e.status === 404) { state.alarms.delete(id); render(); } else EC.showError(e);
    }
  }

  /* A new pending offer to this person: sound and vibration, once per offer. */
  function noticeOffers(offers, alarm) {
    for (const o of offers) {
      if (o.responder_id !== me() || o.status !== "pending" || state.seenOffers.has(o.id)) continue;
      state.seenOffers.add(o.id);
      if (!state.booting) alertDispatch(alarm);
    }
  }
  function alertDispatch(alarm) {
    document.body.dataset.dispatches = String(Number(document.body.dataset.dispatches || 0) + 1);
    EC.sound.beep(988, 200, 3);
    if (navigator.vibrate) navigator.vibrate([300, 120, 300, 120, 300]);
    EC.toast(t("staff.new_dispatch", { kind: tr("kind", alarm.kind) }), "warn");
  }

  function onMessage(msg) {
    if (msg.type === "alarm" || msg.type === "offer") {
      upsert(msg.alarm);
      if (msg.type === "offer") {
        const d = state.details.get(msg.alarm.id);
        if (d && !(d.offers || []).some((o) => o.id === msg.offer.id)) d.offers = [...(d.offers || []), msg.offer];
        noticeOffers([msg.offer], msg.alarm);
      }
      render();
      if (state.alarms.has(msg.alarm.id)) scheduleDetail(msg.alarm.id);
    }
  }

  async function resync() {
    if (!state.meta) state.meta = await api("GET", "/api/console/meta");
    const list = await api("GET", "/api/alarms?status=open&limit=1000");
    state.alarms = new Map();
    list.forEach(upsert);
    for (const id of [...state.details.keys()]) if (!state.alarms.has(id)) state.details.delete(id);
    await Promise.all(list.map((a) => loadDetail(a.id)));
    state.booting = false;
    render();
  }

  function renderConn() {
    const s = state.connState;
    $("conn").dataset.state = s;
    $("conn").textContent = t(`conn.${s}`);
    const down = s === "down" || s === "reconnecting";
    $("banner").hidden = !down;
    if (down) {
      const at = state.live && state.live.retryAt;
      const secs = at ? Math.max(0, Math.ceil((at - Date.now()) / 1000)) : 0;
      $("banner-text").textContent = s === "down" ? t("conn.banner", { s: secs }) : t("conn.banner_trying");
    }
  }

  function tick() {
    document.querySelectorAll("[data-since]").forEach((el) => {
      el.textContent = EC.fmtAge(EC.ageSeconds(el.dataset.since));
    });
    renderConn();
  }

  function renderSound() {
    $("sound-on").hidden = EC.sound.unlocked;
  }

  async function enter() {
    EC.showApp();
    EC.applyI18n();
    renderSound();
    try {
      const facs = await api("GET", "/api/facilities");
      state.facilityName = facs.length === 1 ? facs[0].name : "";
      $("whofac").textContent = state.facilityName;
    } catch (e) { EC.showError(e); }
    if (state.live) state.live.stop();
    state.booting = true; // offers already pending at login are not "new"
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
    state.details.clear();
    state.revealed.clear();
    EC.showLogin(reasonKey);
  }

  async function boot() {
    await EC.loadDicts();
    EC.applyI18n();
    EC.wireLang();
    EC.onLang(() => { EC.applyI18n(); render(); renderConn(); });
    EC.onLogout(leave);
    EC.wireLogin($("login-form"), () => { EC.sound.unlock(); enter(); });
    $("logout").addEventListener("click", () => EC.logout());
    $("sound-on").addEventListener("click", () => { EC.sound.unlock(); EC.sound.beep(660, 80, 1); renderSound(); });
    setInterval(tick, 1000);
    // A pending dispatch keeps calling until it is answered, like a pager.
    setInterval(() => { if (document.body.dataset.pending === "true") EC.sound.beep(988, 200, 2); }, 5000);
    document.body.dataset.ready = "true";
    if (EC.session) enter(); else leave(null);
  }

  boot();
})();
