/* Registry management (issue 8): residents, home care beds and districts, each listed with
 * a create form. Lists show only the public shapes: ID numbers and addresses go in through
 * the forms but never come back here (the console's audited reveal is the only way out). */
"use strict";

(() => {
  const { t, tr, h, raw, api } = EC;
  const $ = (id) => document.getElementById(id);
  const state = { tab: "residents", facilities: [], beds: [], households: [], districts: [] };

  const isAdmin = () => EC.session && EC.session.role === "admin";

  function option(value, label, isRaw) {
    const o = h("option", { value });
    if (isRaw) o.append(raw(label)); else o.textContent = label;
    return o;
  }

  function cells(...values) {
    return values.map((v) => h("td", {}, v instanceof Node ? v : raw(v ?? "")));
  }

  function placeOf(r) {
    if (r.home_bed_id) return t("reg.at_home_bed", { id: r.home_bed_id });
    if (r.household_id) return t("reg.at_household", { id: r.household_id });
    const f = state.facilities.find((x) => x.id === r.facility_id);
    return f ? f.name : t("common.none");
  }

  function districtName(code) {
    const d = state.districts.find((x) => x.code === code);
    return d ? `${d.name} (${d.code})` : (code || "");
  }

  async function loadAll() {
    const [facilities, districts] = await Promise.all([
      api("GET", "/api/facilities"), api("GET", "/api/districts")]);
    state.facilities = facilities;
    state.districts = districts;
    const [beds, households, residents] = await Promise.all([
      api("GET", "/api/home-beds"),
      // Facility staff may not list households; their page simply has none.
      api("GET", "/api/households").catch((e) => { if (e.status === 403) return []; throw e; }),
      api("GET", "/api/residents")]);
    state.beds = beds;
    state.households = households;
    renderResidents(residents);
    renderBeds();
    renderHouseholds();
    renderDistricts();
    renderChoices();
  }

  function renderResidents(rows) {
    $("residents").tBodies[0].replaceChildren(...rows.map((r) => h("tr", { "data-id": String(r.id) },
      ...cells(String(r.id), r.name, r.birth_date || "", r.ability_level ? tr("level", r.ability_level) : "",
        placeOf(r)))));
  }

  function renderBeds() {
    $("beds").tBodies[0].replaceChildren(...state.beds.map((b) => {
      const f = state.facilities.find((x) => x.id === b.facility_id);
      return h("tr", { "data-id": String(b.id) }, ...cells(String(b.id), f ? f.name : String(b.facility_id),
        districtName(b.district_code), b.established_on || "",
        t(b.liability_insured ? "common.yes" : "common.no")));
    }));
  }

  function renderHouseholds() {
    $("households").tBodies[0].replaceChildren(...state.households.map((x) => h("tr", { "data-id": String(x.id) },
      ...cells(String(x.id), districtName(x.district_code), t(x.area === "remote" ? "reg.area_remote" : "reg.area_town"),
        x.lat ?? "", x.lon ?? ""))));
  }

  function renderDistricts() {
    $("districts").tBodies[0].replaceChildren(...state.districts.map((d) => h("tr", { "data-code": d.code },
      ...cells(d.code, d.name, tr("district_level", d.level), d.parent_code ? districtName(d.parent_code) : "",
        d.fiscal_region ? tr("fiscal", d.fiscal_region) : ""))));
  }

  function renderChoices() {
    const districtOptions = () => [option("", t("common.none")),
      ...state.districts.map((d) => option(d.code, `${d.name} (${d.code})`, true))];
    $("district-parent").replaceChildren(...districtOptions());
    $("bed-district").replaceChildren(...districtOptions());
    $("household-district").replaceChildren(
      ...state.districts.map((d) => option(d.code, `${d.name} (${d.code})`, true)));
    $("bed-facility").replaceChildren(...state.facilities.map((f) => option(String(f.id), f.name, true)));
    renderPlaces();
  }

  function renderPlaces() {
    const kind = $("placement").value;
    let opts = [];
    if (kind === "facility_id") opts = state.facilities.map((f) => option(String(f.id), f.name, true));
    if (kind === "home_bed_id") {
      opts = state.beds.map((b) => option(String(b.id), t("reg.at_home_bed", { id: b.id })));
    }
    if (kind === "household_id") {
      opts = state.households.map((x) => option(String(x.id),
        t("reg.at_household", { id: x.id }) + " · " + districtName(x.district_code), true));
    }
    $("place").replaceChildren(...opts);
  }

  /* The form's fields as the API's JSON: blanks omitted, numbers as numbers. */
  function formBody(form, numeric, booleans) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.type === "submit") continue;
      if (booleans.includes(el.name)) { body[el.name] = el.checked; continue; }
      const v = el.value.trim();
      if (v === "") continue;
      body[el.name] = numeric.includes(el.name) ? Number(v) : v;
    }
    return body;
  }

  function wireForm(id, build, path) {
    const form = $(id);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const btn = form.querySelector("button[type=submit]");
      btn.disabled = true;
      try {
        await api("POST", path, build(form));
        EC.toast(t("reg.created"), "ok");
        form.reset();
        await loadAll();
      } catch (e) {
        // The form keeps what was typed, so the person can correct it.
        EC.showError(e);
      } finally {
        btn.disabled = false;
      }
    });
  }

  function wireForms() {
    wireForm("resident-form", (form) => {
      const b = formBody(form, [], []);
      const kind = b.placement;
      const place = Number(b.place);
      delete b.placement;
      delete b.place;
      b[kind] = place;
      return b;
    }, "/api/residents");
    wireForm("bed-form", (form) => {
      const b = formBody(form, ["lat", "lon", "facility_id"], ["liability_insured"]);
      return b;
    }, "/api/home-beds");
    wireForm("household-form", (form) => formBody(form, ["lat", "lon"], []), "/api/households");
    wireForm("district-form", (form) => formBody(form, [], []), "/api/districts");
    $("placement").addEventListener("change", renderPlaces);
  }

  function showTab(name) {
    state.tab = name;
    document.querySelectorAll(".tabs [data-tab]").forEach((b) => {
      b.setAttribute("aria-selected", String(b.dataset.tab === name));
    });
    document.querySelectorAll("[data-tabpanel]").forEach((p) => { p.hidden = p.dataset.tabpanel !== name; });
  }

  async function enter() {
    EC.showApp();
    $("whorole").textContent = tr("role", EC.session.role);
    document.querySelectorAll("[data-admin-only]").forEach((f) => { f.hidden = !isAdmin(); });
    EC.applyI18n();
    try { await loadAll(); } catch (e) { EC.showError(e); }
    document.body.dataset.loaded = "true";
  }

  function leave(reasonKey) {
    document.body.dataset.loaded = "false";
    EC.showLogin(reasonKey);
  }

  async function boot() {
    await EC.loadDicts();
    EC.applyI18n();
    EC.wireLang();
    EC.onLang(() => { EC.applyI18n(); if (EC.session) loadAll().catch(EC.showError); });
    EC.onLogout(leave);
    EC.wireLogin($("login-form"), enter);
    $("logout").addEventListener("click", () => EC.logout());
    document.querySelectorAll(".tabs [data-tab]").forEach((b) => {
      b.addEventListener("click", () => showTab(b.dataset.tab));
    });
    wireForms();
    showTab("residents");
    document.body.dataset.ready = "true";
    if (EC.session) enter(); else leave(null);
  }

  boot();
})();
