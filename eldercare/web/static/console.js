/* The duty operator's console: live queue, alarm detail and lifecycle actions, device
 * health, a map drawn from stored coordinates, shift handover, and (orders.js) the
 * work-order tab and 12349 call intake.
 *
 * A native ES module (no build step, CSP script-src 'self'): this entry holds the tabs, the
 * keys, the shift and boot; each other section is a module in console/, and state.js holds
 * what they share. Login and the session are common.js's (EC), as on every page. */
import { $, api, h, state, t, tr } from "./console/state.js";
import { renderQueue, sorted, tick } from "./console/queue.js";
import { alertLoop } from "./console/alerting.js";
import { onMessage, renderConn, resync } from "./console/live.js";
import { act, ACTIONS, renderDetail, select } from "./console/detail.js";
import { renderMap } from "./console/map.js";
import { renderHealth } from "./console/health.js";
import { renderHandover } from "./console/handover.js";

export async function showTab(name) {
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

export function renderAll() {
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
  EC.showApp();
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
  EC.showLogin(reasonKey);
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
