/* What the console's modules share: the server's vocabularies (GET /api/console/meta),
 * the open alarms, the selection and the tab on screen. */
export const { t, tr, trNode, h, raw, api } = EC;
export const $ = (id) => document.getElementById(id);

// The state machine, the vocabularies and the acknowledgement targets are the server's:
// GET /api/console/meta once per session, and allowed_actions on every alarm.
export const REVEAL_REASONS = ["reveal.reason_alarm", "reveal.reason_family", "reveal.reason_dispatch"];

export const state = {
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
