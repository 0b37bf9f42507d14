// A chat server written the way the `ws` README and most Node tutorials write one: identity from the
// query string, one-to-one routing by scanning every client, a room broadcast loop calling client.send
// per member, and the README's "detect broken connections" heartbeat (ping everyone every interval,
// terminate whoever has not answered the previous ping). Speaks the subset of the tornado-chat protocol
// that the bench (bench/) drives: join -> joined, send -> ack + message.
//
// Usage: NODE_PATH=DIR/node_modules node node_ws_server.js [--port 0] [--ping-interval 25] [--ping-timeout 10]
'use strict';

const { WebSocketServer, WebSocket } = require('ws');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const port = Number(option('--port', '0'));
const pingIntervalMs = Number(option('--ping-interval', '25')) * 1000;

const wss = new WebSocketServer({ host: '127.0.0.1', port });
const rooms = new Map(); // room name -> Set of sockets

wss.on('connection', (ws, req) => {
  ws.user = new URL(req.url, 'http://localhost').searchParams.get('user');
  ws.rooms = new Set();
  ws.isAlive = true;
  ws.on('pong', () => { ws.isAlive = true; });

  ws.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      ws.send(JSON.stringify({ type: 'error', code: 'bad_json' }));
      return;
    }
    if (msg.type === 'join') {
      if (!rooms.has(msg.room)) rooms.set(msg.room, new Set());
      rooms.get(msg.room).add(ws);
      ws.rooms.add(msg.room);
      ws.send(JSON.stringify({ type: 'joined', room: msg.room }));
    } else if (msg.type === 'send') {
      ws.send(JSON.stringify({ type: 'ack', id: msg.id }));
      if (msg.room !== undefined) {
        const out = JSON.stringify({ type: 'message', from: ws.user, room: msg.room, text: msg.text });
        for (const client of rooms.get(msg.room) || []) {
          if (client !== ws && client.readyState === WebSocket.OPEN) client.send(out);
        }
      } else {
        const out = JSON.stringify({ type: 'message', from: ws.user, to: msg.to, text: msg.text });
        wss.clients.forEach((client) => {
          if (client.user === msg.to && client.readyState === WebSocket.OPEN) client.send(out);
        });
      }
    }
  });

  ws.on('close', () => {
    for (const room of ws.rooms) rooms.get(room).delete(ws);
  });
});

const heartbeat = setInterval(() => {
  wss.clients.forEach((ws) => {
    if (ws.isAlive === false) return ws.terminate();
    ws.isAlive = false;
    ws.ping();
  });
}, pingIntervalMs);

wss.on('listening', () => {
  console.error(`node-ws listening on http://127.0.0.1:${wss.address().port}/`);
});

function stop() {
  clearInterval(heartbeat);
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
