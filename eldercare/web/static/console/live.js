/* Live updates: websocket messages, resync after a gap, and the connection banner. */
import { $, api, state, t, tr } from "./state.js";
import { renderQueue } from "./queue.js";
import { flash } from "./alerting.js";
import { loadDetail } from "./detail.js";
import { renderMap } from "./map.js";
import { renderHealth } from "./health.js";
import { renderHandoverOpen } from "./handover.js";
import { renderAll } from "../console.js";

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
export function ackTarget(a) {
  const t = state.meta.ack_target_s;
  return t.facility[a.facility_id] ?? t.area[a.area] ?? t.default;
}

export function upsert(a) {
  if (state.meta.open_statuses.includes(a.status)) state.alarms.set(a.id, a);
  else state.alarms.delete(a.id);
}

let detailTimer = null;
function scheduleDetail() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(loadDetail, 150);
}

export function onMessage(msg) {
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

export async function resync() {
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

export function renderConn() {
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
