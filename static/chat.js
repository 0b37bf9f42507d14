// Minimal chat page: log in, join a room, send and see messages.
// Text is always set with textContent, never parsed as HTML.

const $ = (id) => document.getElementById(id);
let socket = null;
let me = null;
let room = null;
let nextId = 1;

function show(line) {
  const item = document.createElement("li");
  const sender = document.createElement("span");
  sender.className = "sender";
  sender.textContent = line.from;
  const text = document.createElement("span");
  text.textContent = line.text;
  item.append(sender, text);
  if (line.from === me) item.classList.add("own");
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const base = location.pathname.replace(/[^/]*$/, "");
  socket = new WebSocket(`${scheme}//${location.host}${base}ws`);
  socket.onopen = () => { $("status").textContent = "connected"; };
  socket.onclose = () => { $("status").textContent = "offline"; };
  socket.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "welcome") {
      me = frame.user;
    } else if (frame.type === "joined") {
      room = frame.room;
      $("status").textContent = `connected, in #${room}`;
    } else if (frame.type === "message" && frame.room === room) {
      show(frame);
    } else if (frame.type === "error") {
      $("status").textContent = `error: ${frame.message}`;
    }
  };
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const credentials = JSON.stringify({ username: $("username").value, password: $("password").value });
  const post = (path) => fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: credentials });
  // A new name registers; a taken one logs in.
  let response = await post("api/register");
  if (response.status === 409) response = await post("api/login");
  const body = await response.json();
  if (!response.ok) {
    alert(body.message);
    return;
  }
  me = body.username;
  $("login-form").hidden = true;
  $("chat").hidden = false;
  connect();
});

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  socket.send(JSON.stringify({ type: "join", room: $("room").value }));
});

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!room || !text.trim()) return;
  const id = `${Date.now().toString(36)}-${nextId++}`;
  socket.send(JSON.stringify({ type: "send", id, room, text }));
  show({ from: me, text });
  $("text").value = "";
});
