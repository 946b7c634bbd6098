/* Device health per facility. */
import { $, api, h, raw, state, t, trNode } from "./state.js";
import { renderAll, showTab } from "../console.js";

export async function renderHealth() {
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
export function openFacility(id) {
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
