/* Shared by the operator console and the staff page: translations, the login session,
 * the API, the live socket with reconnect and resync, and the audible alert.
 * No framework and no build step: these pages must run from the package on a machine
 * with no internet. Personal data is never written to the browser console. */
"use strict";

const EC = (() => {
  const LANGS = ["zh-CN", "en"];
  const dicts = {};
  let lang = localStorage.getItem("eldercare.lang") || "zh-CN";
  if (!LANGS.includes(lang)) lang = "zh-CN";
  const missing = new Set();

  async function loadDicts() {
    await Promise.all(LANGS.map(async (l) => {
      const r = await fetch(`/static/i18n/${l}.json`);
      dicts[l] = await r.json();
    }));
  }

  /* t("age.ms", {m: 1, s: 5}); a missing key shows the key itself and is recorded so
   * the browser test can fail on it. */
  function t(key, params) {
    let s = dicts[lang] && dicts[lang][key];
    if (s === undefined) {
      missing.add(key);
      s = key;
    }
    if (params) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
    return s;
  }
  function has(key) { return !!(dicts[lang] && key in dicts[lang]); }

  /* An enum value from the API (kind, status, ...): translated when known; an unknown
   * future value is shown as the raw code, marked as data, rather than hidden. */
  function tr(prefix, value) {
    if (value === null || value === undefined || value === "") return t("common.none");
    const key = `${prefix}.${value}`;
    return has(key) ? t(key) : String(value);
  }
  function trNode(prefix, value) {
    const key = `${prefix}.${value}`;
    if (value !== null && value !== undefined && !has(key)) return raw(String(value));
    return document.createTextNode(tr(prefix, value));
  }

  function applyI18n(root = document) {
    document.documentElement.lang = lang;
    root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    for (const attr of ["placeholder", "title", "aria-label"]) {
      root.querySelectorAll(`[data-i18n-${attr}]`).forEach((el) => {
        el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`)));
      });
    }
  }

  const langListeners = [];
  function setLang(l) {
    if (!LANGS.includes(l)) return;
    lang = l;
    localStorage.setItem("eldercare.lang", l);
    // Toasts were written in the old language; they are transient, so drop them.
    const toasts = document.getElementById("toasts");
    if (toasts) toasts.replaceChildren();
    applyI18n();
    document.querySelectorAll("select.lang").forEach((s) => { s.value = l; });
    langListeners.forEach((fn) => fn(l));
  }

  /* ------------------------------------------------------------ DOM helpers */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  /* Data (names, rooms, ids, free text) is marked so the translation test knows it is
   * not interface text. */
  function raw(value, cls) {
    return h("span", { class: cls ? `raw ${cls}` : "raw", "data-raw": "" },
      value === null || value === undefined ? "" : String(value));
  }

  /* ------------------------------------------------------------ time */
  let skewMs = 0; // server clock minus this workstation's clock
  function setServerNow(iso) {
    const server = Date.parse(iso);
    if (!Number.isNaN(server)) skewMs = server - Date.now();
  }
  function now() { return Date.now() + skewMs; }
  function ageSeconds(iso) { return Math.max(0, Math.floor((now() - Date.parse(iso)) / 1000)); }
  function fmtAge(sec) {
    if (sec < 60) return t("age.s", { s: sec });
    if (sec < 3600) {
      return t("age.ms", { m: Math.floor(sec / 60), s: String(sec % 60).padStart(2, "0") });
    }
    if (sec < 86400 * 2) {
      return t("age.hm", { h: Math.floor(sec / 3600),
        m: String(Math.floor((sec % 3600) / 60)).padStart(2, "0") });
    }
    return t("age.d", { d: Math.floor(sec / 86400) });
  }
  function pad(n) { return String(n).padStart(2, "0"); }
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const today = new Date(now());
    const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (d.toDateString() === today.toDateString()) return hms;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
  }
  function yearsSince(dateStr) {
    if (!dateStr) return null;
    const b = new Date(dateStr), n = new Date(now());
    let y = n.getFullYear() - b.getFullYear();
    if (n.getMonth() < b.getMonth() || (n.getMonth() === b.getMonth() && n.getDate() < b.getDate())) y--;
    return y;
  }

  /* ------------------------------------------------------------ session */
  // sessionStorage: a reload keeps the login, closing the tab (a shared workstation)
  // does not leave a token behind.
  const KEY = "eldercare.session";
  let session = null;
  try { session = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch (e) { session = null; }
  if (session && session.expires_at && session.expires_at < Date.now()) session = null;
  const authListeners = [];

  async function login(username, password) {
    const body = new URLSearchParams({ username, password });
    const r = await fetch("/api/auth/token", { method: "POST", body,
      headers: { "Content-Type": "application/x-www-form-urlencoded" } });
    if (r.status === 401) throw new ApiError(401, t("auth.bad_credentials"));
    if (r.status === 429) {
      const min = Math.max(1, Math.ceil(Number(r.headers.get("Retry-After") || 60) / 60));
      throw new ApiError(429, t("auth.too_many", { min }));
    }
    if (r.status === 422) throw new ApiError(422, t("auth.password_too_long"));
    if (!r.ok) throw new ApiError(r.status, t("error.server", { status: r.status }));
    const tok = await r.json();
    session = { token: tok.access_token, username: tok.username, role: tok.role,
      facility_id: tok.facility_id, expires_at: Date.now() + tok.expires_in * 1000 };
    const me = await api("GET", "/api/me");
    session.responder_id = me.responder_id;
    session.provider_id = me.provider_id;
    session.worker_id = me.worker_id;
    sessionStorage.setItem(KEY, JSON.stringify(session));
    return session;
  }
  function logout(reasonKey) {
    // Signing out ends the token on the server too (API and live socket); an expired
    // or revoked one (reasonKey set) has nothing left to end.
    if (session && !reasonKey) {
      fetch("/api/auth/logout", { method: "POST", keepalive: true,
        headers: { Authorization: `Bearer ${session.token}` } }).catch(() => {});
    }
    session = null;
    sessionStorage.removeItem(KEY);
    authListeners.forEach((fn) => fn(reasonKey || null));
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  /* extra: more request headers, e.g. the Idempotency-Key of the worker page's check-in. */
  async function api(method, path, body, extra) {
    const headers = { ...(extra || {}) };
    if (session) headers.Authorization = `Bearer ${session.token}`;
    const opts = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, t("error.network"));
    }
    if (r.status === 401) {
      logout("auth.expired");
      throw new ApiError(401, t("auth.expired"));
    }
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!r.ok) {
      const key = { 403: "error.forbidden", 404: "error.not_found", 409: "error.conflict",
        422: "error.invalid" }[r.status] || "error.server";
      const err = new ApiError(r.status, t(key, { status: r.status }));
      err.detail = data && typeof data.detail === "string" ? data.detail : null;
      throw err;
    }
    return data;
  }

  /* ------------------------------------------------------------ toasts */
  function toast(message, kind, detail) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const el = h("div", { class: `toast ${kind || ""}`, role: "status" }, message,
      detail ? h("div", { class: "toast-detail" }, raw(detail)) : null);
    box.append(el);
    setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
  }
  function showError(e) {
    if (e && e.status === 401) return;
    toast(e && e.message ? e.message : t("error.network"), "error", e && e.detail);
  }

  /* ------------------------------------------------------------ live socket */
  /* The socket carries changes only; every (re)connect resyncs from the API. Messages
   * that arrive while the resync is in flight are held and applied after the snapshot,
   * so an older snapshot never overwrites a newer change. */
  class Live {
    constructor({ onMessage, onResync, onState }) {
      Object.assign(this, { onMessage, onResync, onState });
      this.attempt = 0;
      this.ws = null;
      this.stopped = false;
      this.held = null;
      this.retryAt = null;
    }
    start() { this.stopped = false; this.connect(); }
    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      clearInterval(this.pinger);
      if (this.ws) this.ws.close(1000);
      this.ws = null;
    }
    connect() {
      if (this.stopped || !session) return;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      // The token goes in the first message, never in the URL (access logs keep URLs).
      const ws = new WebSocket(`${proto}//${location.host}/api/ws`);
      this.ws = ws;
      this.greeted = false;
      this.onState(this.attempt ? "reconnecting" : "connecting");
      // Live only once the server says hello: a proxy can accept the upgrade while the
      // app behind it is down, and a socket that never greets must not hide the banner.
      ws.onopen = () => {
        if (ws !== this.ws) return;
        if (!session) { ws.close(1000); return; }
        ws.send(JSON.stringify({ type: "auth", token: session.token }));
        clearTimeout(this.helloTimer);
        this.helloTimer = setTimeout(() => { if (ws === this.ws && !this.greeted) ws.close(4000); }, 5000);
      };
      ws.onmessage = (ev) => {
        if (ws !== this.ws) return;
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (msg.type === "hello") {
          this.greeted = true;
          clearTimeout(this.helloTimer);
          this.attempt = 0;
          this.retryAt = null;
          this.onState("live");
          clearInterval(this.pinger);
          this.pinger = setInterval(() => {
            if (ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}');
          }, 20000);
          this.resync();
          return;
        }
        if (msg.type === "pong") return;
        if (this.held) this.held.push(msg); else this.onMessage(msg);
      };
      ws.onclose = (ev) => {
        if (ws !== this.ws) return;
        clearInterval(this.pinger);
        clearTimeout(this.helloTimer);
        this.ws = null;
        if (this.stopped) return;
        if (ev.code === 4401) { logout("auth.expired"); return; }
        // A refused upgrade (expired token) reaches the page as a bare 1006: ask the API,
        // whose 401 signs the page out instead of retrying forever.
        if (!this.greeted) api("GET", "/api/me").catch(() => {});
        // Backoff 0.5 s, 1 s, 2 s ... 10 s, with jitter so a restarted server is not
        // hit by every console at the same instant.
        const base = Math.min(10000, 500 * 2 ** this.attempt);
        const delay = Math.round(base * (0.8 + Math.random() * 0.4));
        this.attempt += 1;
        this.retryAt = Date.now() + delay;
        this.onState("down");
        this.timer = setTimeout(() => this.connect(), delay);
      };
    }
    async resync() {
      this.held = [];
      try {
        await this.onResync();
      } catch (e) {
        showError(e);
      } finally {
        const held = this.held || [];
        this.held = null;
        held.forEach((m) => this.onMessage(m));
      }
    }
    retryNow() {
      if (this.ws || this.stopped) return;
      clearTimeout(this.timer);
      this.connect();
    }
  }

  /* ------------------------------------------------------------ sound */
  /* Browsers keep audio locked until a click; unlock() must be called from one. */
  const sound = {
    ctx: null,
    beeps: 0,
    unlock() {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return false;
      if (!this.ctx) this.ctx = new Ctx();
      if (this.ctx.state === "suspended") this.ctx.resume();
      return true;
    },
    get unlocked() { return !!this.ctx && this.ctx.state !== "closed"; },
    beep(freq = 880, ms = 180, count = 2) {
      this.beeps += 1;
      document.body.dataset.beeps = String(this.beeps);
      if (!this.ctx) return;
      const t0 = this.ctx.currentTime;
      for (let i = 0; i < count; i++) {
        const osc = this.ctx.createOscillator();
        const gain = this.ctx.createGain();
        osc.type = "square";
        osc.frequency.value = freq;
        const start = t0 + i * (ms / 1000) * 1.6;
        gain.gain.setValueAtTime(0.0001, start);
        gain.gain.exponentialRampToValueAtTime(0.25, start + 0.01);
        gain.gain.exponentialRampToValueAtTime(0.0001, start + ms / 1000);
        osc.connect(gain).connect(this.ctx.destination);
        osc.start(start);
        osc.stop(start + ms / 1000 + 0.02);
      }
    },
  };

  /* ------------------------------------------------------------ login form */
  function wireLogin(form, onDone) {
    const err = form.querySelector(".login-error");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      err.textContent = "";
      const btn = form.querySelector("button[type=submit]");
      btn.disabled = true;
      try {
        await login(form.username.value.trim(), form.password.value);
        form.password.value = "";
        onDone();
      } catch (e) {
        err.textContent = e.message;
      } finally {
        btn.disabled = false;
      }
    });
  }
  // Every page has the same two faces: #login (the form) and #app (who is signed in in
  // #whoami). Pages call these from their enter/leave and keep only their own state there.
  function showApp() {
    document.getElementById("login").hidden = true;
    document.getElementById("app").hidden = false;
    document.getElementById("whoami").textContent = session.username;
  }
  function showLogin(reasonKey) {
    document.getElementById("app").hidden = true;
    document.getElementById("login").hidden = false;
    document.querySelector("#login-form .login-error").textContent = reasonKey ? t(reasonKey) : "";
  }
  function wireLang() {
    document.querySelectorAll("select.lang").forEach((s) => {
      s.value = lang;
      s.addEventListener("change", () => setLang(s.value));
    });
  }

  return {
    LANGS, loadDicts, t, tr, trNode, has, applyI18n, setLang, onLang: (fn) => langListeners.push(fn),
    get lang() { return lang; }, missing, h, raw, setServerNow, now, ageSeconds, fmtAge, fmtTime,
    yearsSince, login, logout, onLogout: (fn) => authListeners.push(fn), get session() { return session; },
    api, ApiError, toast, showError, Live, sound, wireLogin, showApp, showLogin, wireLang,
  };
})();
