/* llm-firewall demo page. Plain JavaScript, no dependencies, no build step.
 *
 * Chat goes through the firewall's own /v1/chat/completions (streamed, SSE parsed by hand), the
 * console talks to the admin API and the /ws live feed. Every text from the server is written with
 * textContent, never as HTML: alerts quote attack payloads.
 */
"use strict";

(() => {
  const TOKEN_KEY = "llmfw.adminToken";
  const SESSION_KEY = "llmfw.session";
  const USER_KEY = "llmfw.user";
  const MAX_ALERTS = 100;

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    authWaiters: [],
    alerts: new Map(),          // alert_id -> element
    socEnabled: true,
    ws: null,
    wsRetry: 0,
    statusTimer: null,
    countdown: null,
    history: [],                // chat history sent with each request (last turns only)
  };

  /* ---------------------------------------------------------------- helpers */
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function randomId(prefix) {
    const bytes = new Uint8Array(6);
    crypto.getRandomValues(bytes);
    return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function pct(p) { return Math.round(p * 100) + " %"; }
  function timeOf(t) {
    const d = t ? new Date(t * 1000) : new Date();
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function human(s) { return String(s || "").replace(/_/g, " "); }
  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
    if (m) return `${m} min ${String(s).padStart(2, "0")} s`;
    return `${s} s`;
  }
  function coarse(seconds) {
    if (seconds >= 3540) return Math.round(seconds / 3600) + " h";
    if (seconds >= 59) return Math.round(seconds / 60) + " min";
    return Math.max(0, Math.round(seconds)) + " s";
  }
  function setNumber(id, value) {
    const node = $(id);
    const text = String(value ?? 0);
    if (node.textContent !== text) {
      node.textContent = text;
      node.classList.remove("bump");
      void node.offsetWidth; // restart the animation
      node.classList.add("bump");
    }
  }

  /* ---------------------------------------------------------------- identity of this tab */
  function tabIdentity() {
    let user = sessionStorage.getItem(USER_KEY);
    if (!user) { user = randomId("web-"); sessionStorage.setItem(USER_KEY, user); }
    let session = sessionStorage.getItem(SESSION_KEY);
    if (!session) { session = randomId("sess-"); sessionStorage.setItem(SESSION_KEY, session); }
    $("session-id").textContent = session;
    return { user, session };
  }

  /* ---------------------------------------------------------------- admin API with token on demand */
  function askForToken(message) {
    return new Promise((resolve) => {
      state.authWaiters.push(resolve);
      const panel = $("auth-panel");
      const err = $("auth-error");
      if (message) { err.textContent = message; err.hidden = false; } else { err.hidden = true; }
      if (panel.hidden) {
        panel.hidden = false;
        $("admin-token").value = "";
        $("admin-token").focus();
      }
    });
  }
  $("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("admin-token").value.trim();
    if (!value) return;
    state.token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("auth-panel").hidden = true;
    const waiters = state.authWaiters.splice(0);
    waiters.forEach((resolve) => resolve());
  });

  async function api(path, options = {}) {
    for (let attempt = 0; attempt < 4; attempt++) {
      const headers = Object.assign({ "Accept": "application/json" }, options.headers || {});
      if (options.body !== undefined) headers["Content-Type"] = "application/json";
      if (state.token) headers["Authorization"] = "Bearer " + state.token;
      const resp = await fetch(path, {
        method: options.method || "GET", headers, cache: "no-store",
        body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
      });
      if (resp.status === 401) {
        const hadToken = Boolean(state.token);
        state.token = "";
        sessionStorage.removeItem(TOKEN_KEY);
        await askForToken(hadToken ? "That token was not accepted. Try again." : "");
        continue;
      }
      let data = null;
      try { data = await resp.json(); } catch (e) { data = null; }
      if (!resp.ok) {
        const msg = (data && data.error && data.error.message) || `HTTP ${resp.status}`;
        throw new Error(msg);
      }
      return data;
    }
    throw new Error("admin token refused");
  }

  /* ---------------------------------------------------------------- status, metrics, sanctions */
  async function refreshStatus() {
    let st;
    try { st = await api("/api/soc/status"); } catch (e) { return; }
    if (!st) return;
    $("policy-name").textContent = st.policy ? st.policy.name : "?";
    $("policy-mode").textContent = st.policy ? `${st.policy.mode} · ${human(st.policy.security_mode)}` : "";
    const opt = $("security-mode").querySelector('option[value=""]');
    if (st.policy) opt.textContent = `policy default (${human(st.policy.security_mode)})`;
    setSoc(Boolean(st.soc_enabled));
    const m = st.metrics || {};
    setNumber("metric-alerts", m.total_alerts);
    setNumber("metric-fp", m.false_positives);
    setNumber("metric-actions", m.actions_taken);
    setNumber("metric-blocked", m.blocked_entities);
    const c = st.counts || {};
    if (c.requests !== undefined) $("metric-requests").textContent = c.requests;
    if (c.blocked !== undefined) $("metric-refused-requests").textContent = (c.blocked || 0) + (c.refused || 0);
    $("uptime").textContent = "up " + duration(st.uptime_s || 0);
    renderSanctions(st.sanctions || []);
    if ((st.pending_approvals || 0) !== Number($("approvals-count").textContent)) refreshApprovals();
  }
  function scheduleStatus(delay) {
    clearTimeout(state.statusTimer);
    state.statusTimer = setTimeout(async () => {
      await refreshStatus();
      scheduleStatus(10000);
    }, delay);
  }

  function renderSanctions(list) {
    const ul = $("sanctions");
    ul.replaceChildren();
    const now = Date.now() / 1000;
    list.slice().reverse().slice(0, 30).forEach((s) => {
      const li = el("li", "sanction");
      li.dataset.kind = s.kind;
      const what = el("span", "what");
      what.append(el("strong", null, s.subject || `${human(s.kind)} ${s.key}`));
      const left = s.expires_at ? `${duration(s.expires_at - now)} left` : "until released";
      what.append(el("small", null, `${s.reason || "sanction"} · ${left}`));
      li.append(what);
      const lift = el("button", "lift", "Lift");
      lift.type = "button";
      lift.addEventListener("click", async () => {
        lift.disabled = true;
        // A '/' in a key (a range, an IPv6 network) is sent as written: an encoded one is refused.
        const key = String(s.key).split("/").map(encodeURIComponent).join("/");
        try {
          await api(`/api/blocks/${encodeURIComponent(s.kind)}/${key}`, { method: "DELETE" });
        } catch (e) { /* already expired */ }
        refreshStatus();
      });
      li.append(lift);
      ul.append(li);
    });
    $("sanctions-empty").hidden = list.length > 0;
  }

  /* ---------------------------------------------------------------- SOC toggle and security mode */
  function setSoc(enabled) {
    state.socEnabled = enabled;
    const b = $("soc-toggle");
    b.classList.toggle("soc-on", enabled);
    b.classList.toggle("soc-off", !enabled);
    b.setAttribute("aria-checked", String(enabled));
    b.dataset.enabled = String(enabled);
    $("soc-label").textContent = enabled ? "SOC on" : "SOC off";
    b.title = enabled ? "Analysis on: click to forward without inspection"
                      : "Analysis off: requests are forwarded uninspected (sanctions still apply)";
  }
  $("soc-toggle").addEventListener("click", async () => {
    const b = $("soc-toggle");
    b.disabled = true;
    try {
      const r = await api("/api/soc/toggle", { method: "POST", body: { enabled: !state.socEnabled } });
      setSoc(Boolean(r.soc_enabled));
    } catch (e) {
      console.warn("SOC toggle failed:", e.message);
    } finally {
      b.disabled = false;
    }
  });

  /* ---------------------------------------------------------------- alerts */
  function fpClass(p) {
    if (p === null || p === undefined) return "fp-none";
    if (p < 0.3) return "fp-low";
    if (p < 0.7) return "fp-mid";
    return "fp-high";
  }
  function actionLabel(a) {
    let label = human(a.action || "action");
    if (a.sanction && a.expires_at) label += " " + coarse(a.expires_at - Date.now() / 1000);
    if (a.limit && a.window_s) label += ` ${a.limit}/${Math.round(a.window_s)}s`;
    return label;
  }
  function renderActions(container, actions) {
    container.replaceChildren();
    const list = (actions || []).filter((a) => a && a.action);
    if (!list.length) {
      container.append(el("span", "action action-none", "logged only"));
      return;
    }
    list.forEach((a) => {
      const status = a.status || "done";
      let cls = "action";
      let label = actionLabel(a);
      if (status === "pending") { cls += " action-pending"; label += " · awaiting approval"; }
      else if (status === "failed") { cls += " action-failed"; label += " · failed"; }
      else if (status === "would") { cls += " action-pending"; label = "would " + label; }
      else if (status === "skipped") { label += " · skipped"; }
      container.append(el("span", cls, label));
    });
  }
  function renderAlert(a, fresh) {
    if (!a || !a.alert_id) return;
    const existing = state.alerts.get(a.alert_id);
    if (existing) {
      if (a.remediation_taken && a.remediation_taken.length) renderActions(existing.querySelector(".actions"), a.remediation_taken);
      return;
    }
    const sev = ["critical", "high", "medium", "low"].includes(a.severity) ? a.severity : "low";
    const li = el("li", `alert sev-${sev}` + (fresh ? " fresh" : ""));
    li.dataset.alertId = a.alert_id;
    li.dataset.severity = sev;
    li.dataset.threat = a.threat_type || "";
    li.dataset.testid = "alert";
    li.setAttribute("data-testid", "alert");

    const top = el("div", "alert-top");
    const title = el("span", "alert-title", a.title || human(a.threat_type));
    title.title = title.textContent;
    top.append(title);
    top.append(el("span", `sev sev-tag-${sev}`, sev));
    top.append(el("span", "threat", human(a.threat_type)));
    const p = a.fp_probability;
    const fp = el("span", "fp " + fpClass(p), p === null || p === undefined ? "FP n/a" : "FP " + pct(p));
    fp.setAttribute("data-testid", "fp-badge");
    fp.title = "Probability that this alert is a false positive";
    top.append(fp);
    li.append(top);

    li.append(el("p", "alert-desc", a.description || ""));
    const foot = el("div", "alert-foot");
    const actions = el("span", "actions");
    actions.setAttribute("data-testid", "alert-actions");
    renderActions(actions, a.remediation_taken);
    foot.append(actions);
    if (a.recommendation) foot.append(el("span", null, "· recommend " + human(a.recommendation)));
    const who = [a.user, a.ip].filter(Boolean).join(" @ ");
    foot.append(el("span", "who", `${timeOf(a.time)}${who ? " · " + who : ""}`));
    li.append(foot);

    const list = $("alerts");
    if (fresh) list.prepend(li); else list.append(li);
    state.alerts.set(a.alert_id, li);
    while (list.children.length > MAX_ALERTS) {
      const last = list.lastElementChild;
      state.alerts.delete(last.dataset.alertId);
      last.remove();
    }
    $("alerts-empty").hidden = true;
    $("alerts-count").textContent = `${list.children.length} shown`;
  }
  async function loadAlerts() {
    let data;
    try { data = await api("/api/security/alerts?limit=50"); } catch (e) { return []; }
    const items = (data && data.alerts) || [];
    // The list comes newest first; cards already shown only get their actions refreshed.
    items.slice().reverse().forEach((a) => {
      if (state.alerts.has(a.alert_id)) renderAlert(a, false);
      else renderAlert(a, true);
    });
    return items;
  }
  let alertRefresh = null;
  function refreshAlertsSoon() {
    clearTimeout(alertRefresh);
    alertRefresh = setTimeout(() => { loadAlerts(); scheduleStatus(0); }, 700);
  }

  /* ---------------------------------------------------------------- approvals */
  async function refreshApprovals() {
    let data;
    try { data = await api("/api/approvals?status=pending"); } catch (e) { return; }
    const items = ((data && data.approvals) || []).filter((a) => a.status === "pending");
    const ul = $("approvals");
    ul.replaceChildren();
    items.forEach((item) => {
      const li = el("li", "approval");
      li.setAttribute("data-testid", "approval");
      li.dataset.approvalId = item.id;
      const action = item.action || {};
      const what = el("span", "what");
      what.append(el("strong", null, `${human(action.kind)} ${action.subject || ""}`));
      what.append(el("small", null, `${item.reason || "requires approval"} · ${timeOf(item.created_at)}`));
      const ok = el("button", "approve", "Approve");
      const no = el("button", "deny", "Deny");
      ok.type = no.type = "button";
      ok.setAttribute("data-testid", "approve");
      no.setAttribute("data-testid", "deny");
      const decide = async (verdict) => {
        ok.disabled = no.disabled = true;
        try { await api(`/api/approvals/${encodeURIComponent(item.id)}/${verdict}`, { method: "POST", body: { by: "demo-page" } }); }
        catch (e) { console.warn("approval failed:", e.message); }
        refreshApprovals();
        scheduleStatus(0);
      };
      ok.addEventListener("click", () => decide("approve"));
      no.addEventListener("click", () => decide("deny"));
      li.append(what, ok, no);
      ul.append(li);
    });
    const count = $("approvals-count");
    count.textContent = String(items.length);
    count.classList.toggle("has", items.length > 0);
    $("approvals-empty").hidden = items.length > 0;
  }

  /* ---------------------------------------------------------------- live feed */
  function connectLive() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = state.token ? "?token=" + encodeURIComponent(state.token) : "";
    const ws = new WebSocket(`${proto}//${location.host}/ws${q}`);
    state.ws = ws;
    const live = $("live-status");
    ws.addEventListener("open", () => {
      state.wsRetry = 0;
      live.textContent = "live";
      live.classList.add("live-on");
      live.classList.remove("live-off");
      loadAlerts();  // catch up on anything raised while disconnected
    });
    ws.addEventListener("message", (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      onLive(msg);
    });
    ws.addEventListener("close", () => {
      live.textContent = "reconnecting…";
      live.classList.remove("live-on");
      live.classList.add("live-off");
      state.wsRetry = Math.min(state.wsRetry + 1, 6);
      setTimeout(async () => {
        await refreshStatus();  // asks for a token if the server now wants one
        connectLive();
      }, 500 * 2 ** state.wsRetry);
    });
  }
  function onLive(msg) {
    const d = msg.data || {};
    switch (msg.type) {
      case "hello":
        if (typeof d.soc_enabled === "boolean") setSoc(d.soc_enabled);
        break;
      case "security_alert":
        renderAlert(d, true);
        refreshAlertsSoon();  // actions are attached just after the alert is raised
        break;
      case "metrics":
        setNumber("metric-alerts", d.alerts);
        setNumber("metric-fp", d.false_positives);
        setNumber("metric-actions", d.actions);
        if (d.requests !== undefined) $("metric-requests").textContent = d.requests;
        $("metric-refused-requests").textContent = (d.blocked || 0) + (d.refused || 0);
        if (typeof d.soc_enabled === "boolean") setSoc(d.soc_enabled);
        break;
      case "soc_toggle":
        setSoc(Boolean(d.enabled));
        break;
      case "approval":
        refreshApprovals();
        scheduleStatus(0);
        break;
      default:
        break;
    }
  }

  /* ---------------------------------------------------------------- blocked / rate-limited indicator */
  const REFUSALS = {
    ip_blocked: "Your IP address is blocked by the firewall.",
    user_suspended: "Your user account is suspended.",
    session_terminated: "This session was terminated. Start a new session to continue.",
    rate_limit_exceeded: "You are rate limited.",
  };
  function showClientStatus(code, retryAfter, message) {
    const box = $("client-status");
    clearInterval(state.countdown);
    box.replaceChildren();
    box.className = "client-status " + (code === "rate_limit_exceeded" ? "state-limited" : "state-blocked");
    box.dataset.code = code;
    box.append(el("span", null, REFUSALS[code] || message || code));
    const left = el("span", "countdown");
    left.setAttribute("data-testid", "time-left");
    box.append(left);
    box.hidden = false;
    if (retryAfter) {
      const until = Date.now() + retryAfter * 1000;
      const tick = () => {
        const s = (until - Date.now()) / 1000;
        if (s <= 0) { clearInterval(state.countdown); box.hidden = true; return; }
        left.textContent = duration(s) + " left";
      };
      tick();
      state.countdown = setInterval(tick, 1000);
    } else {
      left.textContent = "until an admin lifts it";
    }
  }
  function clearClientStatus() {
    clearInterval(state.countdown);
    $("client-status").hidden = true;
  }

  /* ---------------------------------------------------------------- chat */
  function addMessage(role, text) {
    $("chat-empty").hidden = true;
    const node = el("div", `msg msg-${role}`);
    const body = el("div", "msg-text", text);
    node.append(body);
    $("chat-log").append(node);
    node.scrollIntoView({ block: "end" });
    return { node, body };
  }
  function addBadge(node, cls, text, testid) {
    let meta = node.querySelector(".msg-meta");
    if (!meta) { meta = el("div", "msg-meta"); node.append(meta); }
    const b = el("span", "badge " + cls, text);
    b.setAttribute("data-testid", testid);
    meta.append(b);
    return b;
  }

  async function* sseEvents(resp) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = raw.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (data) yield data;
      }
    }
    if (buffer.trim().startsWith("data:")) yield buffer.trim().slice(5).trim();
  }

  async function alertFor(requestId) {
    if (!requestId) return null;
    try {
      const data = await api("/api/security/alerts?limit=50");
      return ((data && data.alerts) || []).find((a) => a.request_id === requestId) || null;
    } catch (e) { return null; }
  }

  async function sendChat(text) {
    const { user, session } = tabIdentity();
    addMessage("user", text);
    const bot = addMessage("bot", "");
    bot.body.classList.add("typing");
    const headers = { "Content-Type": "application/json", "X-User-ID": user, "X-Session-ID": session };
    const mode = $("security-mode").value;
    if (mode) headers["X-Security-Mode"] = mode;
    const messages = state.history.slice(-6).concat([{ role: "user", content: text }]);
    const socWasOn = state.socEnabled;
    let resp;
    try {
      resp = await fetch("/v1/chat/completions", {
        method: "POST", headers, body: JSON.stringify({ model: "demo-mini", messages, stream: true }),
      });
    } catch (e) {
      bot.body.classList.remove("typing");
      bot.body.textContent = "The firewall could not be reached.";
      addBadge(bot.node, "badge-neutral", "network error", "badge-error");
      return;
    }
    const requestId = resp.headers.get("x-request-id");
    if (!resp.ok) {
      bot.body.classList.remove("typing");
      let err = {};
      try { err = (await resp.json()).error || {}; } catch (e) { err = {}; }
      const code = err.code || `http_${resp.status}`;
      const retry = Number(resp.headers.get("retry-after")) || null;
      if (code === "content_policy_violation") {
        bot.node.classList.add("msg-blocked");
        bot.body.textContent = "Blocked by the firewall: this message was not sent to the model.";
        addBadge(bot.node, "badge-blocked", "Threat detected · blocked", "badge-blocked");
        const alert = await alertFor(requestId);
        if (alert) addBadge(bot.node, "badge-neutral", `${human(alert.threat_type)} · ${alert.severity}`, "badge-threat");
        scheduleStatus(300);
      } else if (resp.status === 403 || resp.status === 429) {
        bot.node.classList.add("msg-refused");
        bot.body.textContent = REFUSALS[code] || err.message || code;
        addBadge(bot.node, "badge-blocked", resp.status === 429 ? "Rate limited" : human(code), "badge-refused");
        showClientStatus(code, retry, err.message);
      } else {
        bot.body.textContent = err.message || `Request failed (HTTP ${resp.status}).`;
        addBadge(bot.node, "badge-neutral", code, "badge-error");
      }
      return;
    }
    clearClientStatus();
    let answer = "";
    let finish = null;
    let streamError = null;
    try {
      for await (const data of sseEvents(resp)) {
        if (data === "[DONE]") break;
        let chunk;
        try { chunk = JSON.parse(data); } catch (e) { continue; }
        if (chunk.error) { streamError = chunk.error; continue; }
        const choice = (chunk.choices || [])[0];
        if (!choice) continue;
        const delta = (choice.delta && choice.delta.content) || "";
        if (delta) { answer += delta; bot.body.textContent = answer; bot.node.scrollIntoView({ block: "end" }); }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    } catch (e) {
      streamError = { message: "the stream was interrupted" };
    }
    bot.body.classList.remove("typing");
    bot.node.dataset.finishReason = finish || "";
    if (streamError || finish === "content_filter") {
      bot.node.classList.add("msg-blocked");
      if (!answer) bot.body.textContent = "";
      bot.body.append(el("em", null, (answer ? "\n" : "") + "[answer stopped by the firewall]"));
      addBadge(bot.node, "badge-blocked", "Answer stopped by the firewall", "badge-filtered");
      scheduleStatus(300);
    } else if (!socWasOn) {
      addBadge(bot.node, "badge-neutral", "Not inspected · SOC off", "badge-uninspected");
    } else {
      const alert = await alertFor(requestId);
      if (alert) {
        addBadge(bot.node, "badge-flagged", `Flagged: ${human(alert.threat_type)} (${alert.severity})`, "badge-flagged");
      } else {
        addBadge(bot.node, "badge-clean", "No threats detected", "badge-clean");
      }
    }
    state.history.push({ role: "user", content: text }, { role: "assistant", content: answer });
    scheduleStatus(300);
  }

  $("chat-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const send = $("chat-send");
    send.disabled = true;
    try { await sendChat(text); } finally { send.disabled = false; input.focus(); }
  });
  $("chat-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("new-session").addEventListener("click", () => {
    sessionStorage.setItem(SESSION_KEY, randomId("sess-"));
    state.history = [];
    tabIdentity();
    clearClientStatus();
  });

  /* ---------------------------------------------------------------- scenarios */
  function renderRun(run) {
    const box = el("div", "run");
    box.setAttribute("data-testid", "scenario-run");
    box.dataset.scenario = run.scenario;
    const head = el("div", "run-head");
    head.append(el("strong", null, run.title || human(run.scenario)));
    head.append(el("span", "muted",
      `${run.blocked}/${run.total} stopped · ${run.alerts} alert${run.alerts === 1 ? "" : "s"} · as ${run.client.user} @ ${run.client.ip}`));
    box.append(head);
    const table = el("table");
    run.steps.forEach((s) => {
      const tr = el("tr");
      const o = el("td");
      const chip = el("span", `outcome outcome-${s.outcome}`, s.outcome);
      o.append(chip);
      tr.append(o);
      tr.append(el("td", "msg-cell", s.message));
      let detail = s.threat ? `${human(s.threat)} · ${s.severity}` : (s.code ? human(s.code) : (s.attack ? "" : "benign"));
      if (s.outcome === "refused" && s.code) detail = human(s.code);
      if (s.actions && s.actions.length) detail += (detail ? " → " : "") + s.actions.map(human).join(", ");
      tr.append(el("td", "muted", detail));
      table.append(tr);
    });
    box.append(table);
    return box;
  }
  document.querySelectorAll("button[data-scenario]").forEach((button) => {
    button.addEventListener("click", async () => {
      const name = button.dataset.scenario;
      button.disabled = true;
      button.classList.add("running");
      try {
        const run = await api(`/api/test/scenario/${encodeURIComponent(name)}`, { method: "POST", body: {} });
        const result = $("scenario-result");
        result.prepend(renderRun(run));
        while (result.children.length > 3) result.lastElementChild.remove();
      } catch (e) {
        console.warn("scenario failed:", e.message);
      } finally {
        button.disabled = false;
        button.classList.remove("running");
        refreshAlertsSoon();
      }
    });
  });

  /* ---------------------------------------------------------------- start */
  async function start() {
    tabIdentity();
    await refreshStatus();       // the first admin call: asks for a token if one is needed
    await loadAlerts();
    await refreshApprovals();
    connectLive();
    scheduleStatus(10000);
  }
  start();
})();
