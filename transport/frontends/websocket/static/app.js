// Transport web client: a small OriginChats client with the gateway's extensions.
// No build step: a plain ES module. Everything the server says is rendered with
// textContent (never as HTML).

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "transport.validator";
const params = new URLSearchParams(location.search);
const WS_URL = new URL(params.get("ws") || "ws", location.href);
WS_URL.protocol = location.protocol === "https:" ? "wss:" : "ws:";

const state = {
  ws: null, handshake: null, me: null, authed: false,
  channels: new Map(),          // name -> channel object
  order: [],                    // local channel names
  current: null,
  messages: new Map(),          // channel -> array of message objects (oldest first)
  complete: new Set(),          // channels whose oldest message is loaded
  unread: new Set(),
  typing: new Map(),            // channel -> Map(user -> timer)
  buddies: new Map(),           // name -> buddy object
  gateway: { connected: false, text: "" },
  backoff: 1000, reconnectTimer: null, lastTyping: 0, pendingAuth: null,
  replyTo: null, listeners: new Map(), nextListener: 1, voice: new Map(),
};

// ---------------------------------------------------------------- connection

function connect() {
  clearTimeout(state.reconnectTimer);
  setStatus("Connecting…", true);
  const ws = new WebSocket(WS_URL.href);
  state.ws = ws;
  ws.onmessage = (e) => {
    let packet;
    try { packet = JSON.parse(e.data); } catch { return; }
    handle(packet);
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.authed = false;
    const delay = Math.min(state.backoff, 30000) * (0.8 + Math.random() * 0.4);
    state.backoff = Math.min(state.backoff * 2, 30000);
    setStatus(`Disconnected — reconnecting in ${Math.round(delay / 1000)} s`, true);
    $("login-status").textContent = "Server unreachable, retrying…";
    state.reconnectTimer = setTimeout(connect, delay);
  };
}

function send(packet) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(packet));
    return true;
  }
  toast("Not connected");
  return false;
}

function request(packet) {
  const listener = "l" + state.nextListener++;
  return new Promise((resolve) => {
    state.listeners.set(listener, resolve);
    if (!send({ ...packet, listener })) { state.listeners.delete(listener); resolve(null); }
  });
}

// ---------------------------------------------------------------- packets

const handlers = {
  handshake(p) {
    state.handshake = p.val;
    const name = (p.val.server && p.val.server.name) || "Transport";
    document.title = name;
    $("server-name").textContent = name;
    $("login-title").textContent = name;
    const cracked = p.val.auth_mode === "cracked";
    $("cracked-fields").hidden = !cracked;
    $("validator-fields").hidden = cracked;
    $("login-subtitle").textContent = cracked ? "Log in or create an account" : "Sign in with your access token";
    $("composer").maxLength = (p.val.limits && p.val.limits.post_content) || 2000;
    $("login-status").textContent = "";
    const token = state.pendingAuth ? null : localStorage.getItem(TOKEN_KEY);
    if (state.pendingAuth) send(state.pendingAuth);
    else if (token) send({ cmd: "auth", validator: token });
    else showLogin();
  },
  auth_success() { state.backoff = 1000; },
  auth_error(p) {
    state.pendingAuth = null;
    if (state.authed || p.val === "Authentication timed out") return; // a fresh connection follows
    localStorage.removeItem(TOKEN_KEY);
    showLogin(p.val);
  },
  ready(p) {
    state.authed = true;
    state.pendingAuth = null;
    state.me = p.user;
    if (p.validator) localStorage.setItem(TOKEN_KEY, p.validator);
    $("me-name").textContent = p.user.nickname || p.user.username;
    $("login").hidden = true;
    $("app").hidden = false;
    setStatus("Connected", false);
    loadChannels();
  },
  ping() {},
  pong() {},
  error(p) { toast(p.val + (p.src ? ` (${p.src})` : "")); },
  rate_limit(p) { toast(`Slow down: wait ${Math.ceil(p.length / 1000)} s`); },
  channels_get(p) {
    const keep = state.current;
    state.channels.clear();
    state.order = [];
    for (const ch of p.val) {
      state.channels.set(ch.name, ch);
      if (!ch.private) state.order.push(ch.name);
      if (ch.gateway && ch.gateway.kind === "dm" && ch.gateway.name) state.buddies.set(ch.gateway.name, ch.gateway);
    }
    renderChannels();
    const first = state.order.find((n) => state.channels.get(n).type === "text");
    select(keep && state.channels.has(keep) ? keep : first, true);
  },
  messages_get(p) {
    const list = state.messages.get(p.channel) || [];
    const known = new Set(list.map((m) => m.id));
    const older = p.messages.filter((m) => !known.has(m.id));
    if (p._older) {
      state.messages.set(p.channel, older.concat(list));
    } else {
      state.messages.set(p.channel, p.messages);
    }
    if (p.messages.length < (p._limit || 100)) state.complete.add(p.channel);
    if (p.channel === state.current) renderMessages(!p._older);
  },
  message_new(p) {
    const list = state.messages.get(p.channel);
    if (list && !list.some((m) => m.id === p.message.id)) list.push(p.message);
    clearTyping(p.channel, p.message.user);
    if (!state.channels.has(p.channel)) loadChannels();
    if (p.channel === state.current) appendMessage(p.message);
    else { state.unread.add(p.channel); renderChannels(); }
  },
  message_edit(p) {
    const m = findMessage(p.channel, p.id);
    if (m) { m.content = p.content; m.edited = true; }
    if (p.channel === state.current) renderMessages(false);
  },
  message_delete(p) {
    const list = state.messages.get(p.channel);
    if (list) state.messages.set(p.channel, list.filter((m) => m.id !== p.id));
    if (p.channel === state.current) renderMessages(false);
  },
  message_react_add(p) { react(p, true); },
  message_react_remove(p) { react(p, false); },
  typing(p) {
    if (state.me && p.user === state.me.username) return;
    let users = state.typing.get(p.channel);
    if (!users) { users = new Map(); state.typing.set(p.channel, users); }
    clearTimeout(users.get(p.user));
    users.set(p.user, setTimeout(() => clearTyping(p.channel, p.user), 4000));
    renderTyping();
  },
  typing_stop(p) { clearTyping(p.channel, p.user); },
  user_connect() {},
  user_disconnect() {},
  voice_user_joined(p) { voiceUpdate(p.channel, p.user, true); },
  voice_user_updated(p) { voiceUpdate(p.channel, p.user, true); },
  voice_user_left(p) { voiceUpdate(p.channel, { username: p.username }, false); },
  voice_state(p) {
    state.voice.set(p.channel, new Map(p.participants.map((u) => [u.username, u])));
    renderVoice();
  },
  voice_join(p) { request({ cmd: "voice_state", channel: p.channel }); },
  voice_leave(p) { request({ cmd: "voice_state", channel: p.channel }); },
  gateway_status(p) {
    state.gateway = { connected: p.connected, text: p.val };
    $("me-dot").className = "dot " + (p.connected ? "online" : "offline");
    $("me-dot").title = p.val;
    if (state.current && state.current.includes(":")) renderHeader();
  },
  gateway_buddy(p) {
    state.buddies.set(p.buddy.name, p.buddy);
    const ch = state.channels.get(p.buddy.channel);
    if (ch) { ch.gateway = { ...ch.gateway, ...p.buddy, kind: "dm", target: p.buddy.name }; ch.display_name = p.buddy.alias || p.buddy.name; }
    renderChannels();
    if (state.current === p.buddy.channel) renderHeader();
  },
  gateway_buddy_removed(p) { state.buddies.delete(p.name); state.channels.delete(p.channel); renderChannels(); },
  gateway_channel(p) {
    if (!state.channels.has(p.channel.name)) { state.channels.set(p.channel.name, p.channel); renderChannels(); }
  },
  gateway_channel_removed(p) {
    state.channels.delete(p.channel);
    if (state.current === p.channel) select(state.order[0]);
    renderChannels();
  },
  gateway_open(p) { state.channels.set(p.channel.name, p.channel); renderChannels(); select(p.channel.name); },
  gateway_join(p) { select(p.channel); },
  gateway_register(p) { toast(p.val); },
  gateway_subject(p) {
    const ch = state.channels.get(p.channel);
    if (ch && ch.gateway) ch.gateway.subject = p.subject;
    if (state.current === p.channel) renderHeader();
  },
  gateway_participant(p) {
    const ch = state.channels.get(p.channel);
    if (!ch || !ch.gateway) return;
    const set = new Set(ch.gateway.participants || []);
    if (p.presence === "offline") set.delete(p.nickname); else { if (p.newname) set.delete(p.nickname); set.add(p.newname || p.nickname); }
    ch.gateway.participants = [...set].sort();
    if (state.current === p.channel) renderHeader();
  },
  gateway_message_failed(p) { toast(`Not delivered: ${p.val}`); },
  gateway_attention(p) { toast(`${p.buddy} wants your attention`); },
};

function handle(packet) {
  if (packet.listener && state.listeners.has(packet.listener)) {
    const resolve = state.listeners.get(packet.listener);
    state.listeners.delete(packet.listener);
    resolve(packet);
    if (packet.cmd === "messages_get") return; // the requester merges the page (see loadHistory)
  }
  const h = handlers[packet.cmd];
  if (h) h(packet);
}

// ---------------------------------------------------------------- actions

function loadChannels() { send({ cmd: "channels_get" }); }

function select(name, reload = false) {
  if (!name || !state.channels.has(name)) return;
  state.current = name;
  state.unread.delete(name);
  state.replyTo = null;
  renderReply();
  renderChannels();
  renderHeader();
  const ch = state.channels.get(name);
  const voice = ch.type === "voice";
  $("voice-panel").hidden = !voice;
  $("messages").hidden = voice;
  $("composer-form").hidden = voice;
  if (voice) { request({ cmd: "voice_state", channel: name }); return; }
  if (reload || !state.messages.has(name)) {
    state.complete.delete(name);
    loadHistory(name, false);
  } else {
    renderMessages(true);
  }
  renderTyping();
  $("composer").focus();
}

async function loadHistory(channel, older) {
  const list = state.messages.get(channel) || [];
  const limit = 50;
  const packet = { cmd: "messages_get", channel, limit };
  if (older && list.length) packet.start = list[0].id;
  const answer = await request(packet);
  if (answer && answer.cmd === "messages_get") {
    answer._older = older;
    answer._limit = limit;
    handlers.messages_get(answer);
  }
}

function sendMessage() {
  const box = $("composer");
  const content = box.value.trim();
  if (!content || !state.current) return;
  const packet = { cmd: "message_new", channel: state.current, content };
  if (state.replyTo) packet.reply_to = state.replyTo.id;
  if (send(packet)) {
    box.value = "";
    state.replyTo = null;
    renderReply();
    autosize();
  }
}

function react(p, add) {
  const m = findMessage(p.channel, p.id);
  if (!m) return;
  m.reactions = m.reactions || {};
  const users = new Set(m.reactions[p.emoji] || []);
  if (add) users.add(p.from); else users.delete(p.from);
  if (users.size) m.reactions[p.emoji] = [...users]; else delete m.reactions[p.emoji];
  if (p.channel === state.current) renderMessages(false);
}

function toggleReaction(m, emoji) {
  const mine = (m.reactions && m.reactions[emoji] || []).includes(state.me.username);
  send({ cmd: mine ? "message_react_remove" : "message_react_add", channel: state.current, id: m.id, emoji });
}

function findMessage(channel, id) {
  return (state.messages.get(channel) || []).find((m) => m.id === id);
}

function clearTyping(channel, user) {
  const users = state.typing.get(channel);
  if (users && users.has(user)) { clearTimeout(users.get(user)); users.delete(user); renderTyping(); }
}

function voiceUpdate(channel, user, present) {
  let members = state.voice.get(channel);
  if (!members) { members = new Map(); state.voice.set(channel, members); }
  if (present) members.set(user.username, user); else members.delete(user.username);
  if (state.current === channel) renderVoice();
}

// ---------------------------------------------------------------- rendering

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function colorFor(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360;
  return `hsl(${h}, 55%, 45%)`;
}

function channelItem(ch) {
  const li = el("li");
  li.dataset.channel = ch.name;
  if (ch.name === state.current) li.classList.add("active");
  if (state.unread.has(ch.name)) li.classList.add("unread");
  const g = ch.gateway;
  if (g && g.kind === "dm") {
    const buddy = state.buddies.get(g.target) || g;
    const dot = el("span", "dot " + (buddy.presence || "offline"));
    dot.title = buddy.presence || "offline";
    li.append(dot, el("span", "name", ch.display_name || g.target));
    if (buddy.status_message) li.append(el("span", "sub", buddy.status_message));
  } else if (g) {
    li.append(el("span", "kind", "#"), el("span", "name", ch.display_name || g.target));
  } else {
    li.append(el("span", "kind", ch.type === "voice" ? "♪" : "#"), el("span", "name", ch.display_name || ch.name));
  }
  li.onclick = () => select(ch.name);
  return li;
}

function renderChannels() {
  const local = $("channel-list");
  local.replaceChildren(...state.order.filter((n) => state.channels.has(n)).map((n) => channelItem(state.channels.get(n))));
  const legacy = [...state.channels.values()].filter((c) => c.private);
  legacy.sort((a, b) => (a.gateway.kind === b.gateway.kind ? (a.display_name || "").localeCompare(b.display_name || "") : a.gateway.kind === "room" ? -1 : 1));
  $("legacy-list").replaceChildren(...legacy.map(channelItem));
  const proto = state.handshake && state.handshake.server && state.handshake.server.protocol;
  $("legacy-title").textContent = proto ? `Conversations · ${proto}` : "Conversations";
}

function renderHeader() {
  const ch = state.channels.get(state.current);
  if (!ch) return;
  const g = ch.gateway;
  let title = (ch.type === "voice" ? "♪ " : "# ") + (ch.display_name || ch.name);
  let desc = ch.description || "";
  if (g && g.kind === "dm") {
    const buddy = state.buddies.get(g.target) || g;
    title = "@ " + (ch.display_name || g.target);
    desc = [buddy.presence || "offline", buddy.status_message].filter(Boolean).join(" — ");
  } else if (g) {
    desc = [g.subject, g.participants && g.participants.length ? `${g.participants.length} in the room` : ""].filter(Boolean).join(" — ");
  }
  if (g && !state.gateway.connected && state.gateway.text) desc += ` (${state.gateway.text})`;
  $("channel-title").textContent = title;
  $("channel-desc").textContent = desc;
  $("composer").placeholder = `Message ${title.slice(2)}`;
}

function formatTime(ts) {
  const d = new Date(ts * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return (today ? "" : d.toLocaleDateString() + " ") + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function messageItem(m, prev) {
  const li = el("li", "message");
  li.dataset.id = m.id;
  li.dataset.user = m.user;
  const compact = prev && prev.user === m.user && !m.reply_to && m.timestamp - prev.timestamp < 300;
  if (compact) li.classList.add("compact");
  const avatar = el("div", "avatar", (m.user || "?").slice(0, 1).toUpperCase());
  avatar.style.background = colorFor(m.user || "?");
  const meta = el("div", "meta");
  const author = el("span", "author", m.user);
  author.style.color = colorFor(m.user || "?");
  meta.append(author, el("span", "time", formatTime(m.timestamp)));
  li.append(avatar, meta);
  if (m.reply_to) li.append(el("div", "reply", `↪ replying to ${m.reply_to.user}`));
  const content = el("div", "content", m.content);
  if (m.edited) content.append(el("span", "edited", "(edited)"));
  li.append(content);
  const reactions = el("div", "reactions");
  for (const [emoji, users] of Object.entries(m.reactions || {})) {
    const b = el("button", users.includes(state.me.username) ? "mine" : "", `${emoji} ${users.length}`);
    b.title = users.join(", ");
    b.dataset.emoji = emoji;
    b.onclick = () => toggleReaction(m, emoji);
    reactions.append(b);
  }
  if (reactions.childElementCount) li.append(reactions);
  const actions = el("div", "actions");
  const ch = state.channels.get(state.current);
  const addAction = (label, title, cls, fn) => { const b = el("button", cls, label); b.title = title; b.onclick = fn; actions.append(b); };
  addAction("👍", "React", "act-react", () => toggleReaction(m, "👍"));
  addAction("↪", "Reply", "act-reply", () => { state.replyTo = m; renderReply(); $("composer").focus(); });
  if (state.me && m.user === state.me.username) {
    if (!(ch && ch.private)) addAction("✎", "Edit", "act-edit", () => startEdit(li, m));
    addAction("✕", "Delete", "act-delete", () => send({ cmd: "message_delete", channel: state.current, id: m.id }));
  }
  li.append(actions);
  return li;
}

function startEdit(li, m) {
  const box = el("textarea", "edit-box");
  box.value = m.content;
  box.rows = 2;
  const content = li.querySelector(".content");
  content.replaceWith(box);
  box.focus();
  box.onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      const value = box.value.trim();
      if (value && value !== m.content) send({ cmd: "message_edit", channel: state.current, id: m.id, content: value });
      renderMessages(false);
    } else if (e.key === "Escape") {
      renderMessages(false);
    }
  };
}

function renderMessages(scrollToEnd) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const oldHeight = box.scrollHeight;
  const list = state.messages.get(state.current) || [];
  const items = list.map((m, i) => messageItem(m, list[i - 1]));
  $("message-list").replaceChildren(...items);
  $("load-older").hidden = state.complete.has(state.current) || list.length === 0;
  if (scrollToEnd || atBottom) box.scrollTop = box.scrollHeight;
  else if (!scrollToEnd) box.scrollTop += box.scrollHeight - oldHeight;
}

function appendMessage(m) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const list = state.messages.get(state.current) || [];
  const ol = $("message-list");
  if (ol.querySelector(`[data-id="${CSS.escape(m.id)}"]`)) return;
  ol.append(messageItem(m, list[list.length - 2]));
  if (atBottom || (state.me && m.user === state.me.username)) box.scrollTop = box.scrollHeight;
}

function renderTyping() {
  const users = state.typing.get(state.current);
  const names = users ? [...users.keys()] : [];
  $("typing").textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

function renderReply() {
  $("reply-bar").hidden = !state.replyTo;
  if (state.replyTo) $("reply-text").textContent = `Replying to ${state.replyTo.user}`;
}

function renderVoice() {
  const members = state.voice.get(state.current) || new Map();
  $("voice-list").replaceChildren(...[...members.values()].map((u) => el("li", "", `${u.username}${u.muted ? " (muted)" : ""}`)));
}

function setStatus(text, bad) {
  const s = $("conn-status");
  s.textContent = text;
  s.classList.toggle("bad", bad);
}

function showLogin(error) {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = error || "";
}

let toastTimer = null;
function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("show"), 3500);
}

function autosize() {
  const box = $("composer");
  box.style.height = "auto";
  box.style.height = Math.min(box.scrollHeight, 200) + "px";
}

// ---------------------------------------------------------------- wiring

function credentials(cmd) {
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  if (!username || !password) { $("login-error").textContent = "Enter a username and a password"; return; }
  state.pendingAuth = { cmd, username, password };
  $("login-error").textContent = "";
  send(state.pendingAuth);
}

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); credentials("login"); });
$("register-btn").addEventListener("click", () => credentials("register"));
$("token-btn").addEventListener("click", () => {
  state.pendingAuth = { cmd: "auth", validator: $("login-token").value.trim() };
  send(state.pendingAuth);
});
$("logout-btn").addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  location.reload();
});
$("composer-form").addEventListener("submit", (e) => { e.preventDefault(); sendMessage(); });
$("composer").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); sendMessage(); }
});
$("composer").addEventListener("input", () => {
  autosize();
  const now = Date.now();
  if ($("composer").value && now - state.lastTyping > 3000 && state.current) {
    state.lastTyping = now;
    send({ cmd: "typing", channel: state.current });
  }
});
$("reply-cancel").addEventListener("click", () => { state.replyTo = null; renderReply(); });
$("load-older").addEventListener("click", () => loadHistory(state.current, true));
$("open-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const buddy = $("open-buddy").value.trim();
  if (buddy) { send({ cmd: "gateway_open", buddy }); $("open-buddy").value = ""; }
});
$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const room = $("join-room").value.trim();
  if (room) { send({ cmd: "gateway_join", room }); $("join-room").value = ""; }
});
$("gateway-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const legacy_name = $("gateway-name").value.trim();
  if (legacy_name) send({ cmd: "gateway_register", legacy_name, password: $("gateway-password").value });
});
$("voice-join").addEventListener("click", () => send({ cmd: "voice_join", channel: state.current, peer_id: "web-" + Math.random().toString(36).slice(2) }));
$("voice-leave").addEventListener("click", () => send({ cmd: "voice_leave" }));
$("voice-mute").addEventListener("click", () => {
  const me = (state.voice.get(state.current) || new Map()).get(state.me.username);
  send({ cmd: "voice_mute", muted: !(me && me.muted) });
});

window.transportClient = state; // for debugging and the browser tests
connect();
