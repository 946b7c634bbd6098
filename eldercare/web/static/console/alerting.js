/* Sound and flash for unacknowledged alarms (only once the shift has started). */
import { state } from "./state.js";

function unackedAlarms() {
  return [...state.alarms.values()].filter((a) => a.status === "raised" && a.category === "alarm");
}
export function alertLoop() {
  const ringing = unackedAlarms().length > 0;
  document.body.dataset.alerting = ringing ? "true" : "false";
  if (ringing && state.shift) EC.sound.beep(a_priorityFreq(), 160, 3);
}
function a_priorityFreq() {
  const top = unackedAlarms().reduce((m, a) => Math.min(m, a.priority), 9);
  return top === 1 ? 988 : 740;
}
export function flash() {
  document.body.classList.remove("flash");
  void document.body.offsetWidth; // restart the animation
  document.body.classList.add("flash");
  setTimeout(() => document.body.classList.remove("flash"), 3000);
}
