/* The map, drawn as SVG from stored coordinates (no tile server). */
import { $, state, t, tr } from "./state.js";
import { select } from "./detail.js";
import { openFacility } from "./health.js";

const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v); else el.setAttribute(k, v);
  }
  kids.forEach((k) => el.append(k instanceof Node ? k : document.createTextNode(String(k))));
  return el;
}
export function renderMap() {
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
