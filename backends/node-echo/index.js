#!/usr/bin/env node
// The echo backend in JavaScript: what backends/echo does in Python, written
// against the wire protocol directly (proto/transport.proto through protobufjs),
// to show that a backend can be written in any language.
//
//   node index.js --host H --port P --service.backend_id=N CONFIG
//
// Frames: a 4-byte big-endian length, then a serialized pbnetwork.WrapperMessage
// whose `payload` holds the message of the wrapper's `type`.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const zlib = require('zlib');
const protobuf = require('protobufjs');

// ---------------------------------------------------------------------------
// protocol

const PROTO = process.env.TRANSPORT_PROTO || path.join(__dirname, '..', '..', 'proto', 'transport.proto');
const root = new protobuf.Root().loadSync(PROTO, { keepCase: true });
const T = root.lookupEnum('pbnetwork.WrapperMessage.Type').values;
const Wrapper = root.lookupType('pbnetwork.WrapperMessage');
const msg = (name) => root.lookupType('pbnetwork.' + name);
const M = {
  Connected: msg('Connected'),
  Disconnected: msg('Disconnected'),
  Login: msg('Login'),
  Logout: msg('Logout'),
  Buddy: msg('Buddy'),
  Buddies: msg('Buddies'),
  ConversationMessage: msg('ConversationMessage'),
  Room: msg('Room'),
  RoomList: msg('RoomList'),
  Participant: msg('Participant'),
  VCard: msg('VCard'),
  Status: msg('Status'),
  Stats: msg('Stats'),
  BackendConfig: msg('BackendConfig'),
  APIVersion: msg('APIVersion'),
};
const STATUS = root.lookupEnum('pbnetwork.StatusType').values;
const ERROR = root.lookupEnum('pbnetwork.ConnectionError').values;
const FLAG = root.lookupEnum('pbnetwork.ParticipantFlag').values;

// Payload class of each incoming type we act on; others are ignored.
const INCOMING = {
  [T.TYPE_LOGIN]: M.Login,
  [T.TYPE_LOGOUT]: M.Logout,
  [T.TYPE_CONV_MESSAGE]: M.ConversationMessage,
  [T.TYPE_BUDDY_CHANGED]: M.Buddy,
  [T.TYPE_BUDDY_REMOVED]: M.Buddy,
  [T.TYPE_JOIN_ROOM]: M.Room,
  [T.TYPE_LEAVE_ROOM]: M.Room,
  [T.TYPE_STATUS_CHANGED]: M.Status,
  [T.TYPE_VCARD]: M.VCard,
  [T.TYPE_BUDDY_TYPING]: M.Buddy,
  [T.TYPE_BUDDY_TYPED]: M.Buddy,
  [T.TYPE_BUDDY_STOPPED_TYPING]: M.Buddy,
  [T.TYPE_ATTENTION]: M.ConversationMessage,
  [T.TYPE_ROOM_SUBJECT_CHANGED]: M.ConversationMessage,
  [T.TYPE_BUDDIES]: M.Buddies,
};

function has(message, field) {
  return Object.prototype.hasOwnProperty.call(message, field);
}

function frame(type, cls, fields) {
  const wrapper = { type };
  if (cls) wrapper.payload = cls.encode(cls.create(fields)).finish();
  const body = Wrapper.encode(Wrapper.create(wrapper)).finish();
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, Buffer.from(body)]);
}

// Incremental decoder: bytes in, [type, payload] out; bad frames skipped and counted.
class FrameDecoder {
  constructor(maxFrameSize) {
    this.maxFrameSize = maxFrameSize;
    this.buffer = Buffer.alloc(0);
    this.skipped = 0;
  }

  feed(data) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, data]) : data;
    const packets = [];
    let offset = 0;
    while (this.buffer.length - offset >= 4) {
      const length = this.buffer.readUInt32BE(offset);
      if (length > this.maxFrameSize) {
        throw new Error(`frame of ${length} bytes exceeds the limit of ${this.maxFrameSize}`);
      }
      if (this.buffer.length - offset - 4 < length) break;
      const body = this.buffer.subarray(offset + 4, offset + 4 + length);
      offset += 4 + length;
      try {
        const wrapper = Wrapper.decode(body);
        const cls = INCOMING[wrapper.type];
        const payload = cls ? cls.decode(has(wrapper, 'payload') ? wrapper.payload : Buffer.alloc(0)) : null;
        packets.push([wrapper.type, payload]);
      } catch (e) {
        this.skipped += 1;
        log('warn', `skipped an unparsable frame: ${e.message}`);
      }
    }
    this.buffer = this.buffer.subarray(offset);
    return packets;
  }
}

// ---------------------------------------------------------------------------
// command line, configuration, logging

function parseArguments(argv) {
  const args = { host: '127.0.0.1', port: null, backendId: '', config: null };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [name, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, null];
    const value = () => (inline !== null ? inline : argv[++i]);
    if (name === '--host') args.host = value();
    else if (name === '--port') args.port = parseInt(value(), 10);
    else if (name === '--service.backend_id') args.backendId = value();
    else if (name === '-j' || name === '--jid') value();
    else if (a.startsWith('-')) continue; // tolerated: other Spectrum options
    else positional.push(a);
  }
  if (positional.length) args.config = positional[positional.length - 1];
  if (!Number.isInteger(args.port)) {
    process.stderr.write('usage: index.js --host H --port P [--service.backend_id=N] [CONFIG]\n');
    process.exit(2);
  }
  return args;
}

function readIni(file) {
  const sections = {};
  let current = null;
  for (const raw of fs.readFileSync(file, 'utf8').split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line[0] === '#' || line[0] === ';') continue;
    const section = /^\[\s*([^\]]+?)\s*\]$/.exec(line);
    if (section) {
      current = sections[section[1]] = sections[section[1]] || {};
      continue;
    }
    const kv = /^([A-Za-z0-9_.-]+)\s*[=:]\s*(.*)$/.exec(line);
    if (kv && current) current[kv[1]] = kv[2].trim();
  }
  return sections;
}

const SIZE_UNITS = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

function parseSize(text, fallback) {
  const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(text || '');
  if (!m || !(m[2].toLowerCase() in SIZE_UNITS)) return fallback;
  return parseInt(m[1], 10) * SIZE_UNITS[m[2].toLowerCase()];
}

let backendTag = '-';
function log(level, text) {
  process.stderr.write(`${new Date().toISOString()} [node-echo#${backendTag}] ${level}: ${text}\n`);
}

// ---------------------------------------------------------------------------
// memory for STATS (KiB)

function memory() {
  try {
    const fields = fs.readFileSync('/proc/self/statm', 'ascii').trim().split(/\s+/);
    const pageKiB = 4; // Linux x86_64/arm64 default page size
    return { res: parseInt(fields[1], 10) * pageKiB, shared: parseInt(fields[2], 10) * pageKiB };
  } catch (e) {
    return { res: Math.round(process.memoryUsage().rss / 1024), shared: 0 };
  }
}

// ---------------------------------------------------------------------------
// a small PNG for vCards

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(kind, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length, 0);
  const body = Buffer.concat([Buffer.from(kind, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body), 0);
  return Buffer.concat([length, body, crc]);
}

function avatar(name, size = 32) {
  const seed = crc32(Buffer.from(name, 'utf8'));
  const base = [(seed >>> 16) & 0xff, (seed >>> 8) & 0xff, seed & 0xff];
  const centre = (size - 1) / 2;
  const rows = Buffer.alloc(size * (1 + size * 3));
  let i = 0;
  for (let y = 0; y < size; y++) {
    rows[i++] = 0;
    for (let x = 0; x < size; x++) {
      const ring = Math.floor(Math.hypot(x - centre, y - centre)) >> 2;
      const colour = ring % 2 ? base : base.map((v) => 255 - (v >> 1));
      rows[i++] = colour[0];
      rows[i++] = colour[1];
      rows[i++] = colour[2];
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---------------------------------------------------------------------------
// the echo network

const ECHO = 'echo';
const ECHO_ROOM_SUBJECT = 'Everything said here is said again';

class EchoBackend {
  constructor(socket, pingInterval, maxFrameSize) {
    this.socket = socket;
    this.pingInterval = pingInterval;
    this.decoder = new FrameDecoder(maxFrameSize);
    this.initialRes = memory().res;
    this.users = new Map(); // user -> legacy name
    this.rooms = new Map(); // user \0 room -> nickname
    this.subjects = new Map(); // user \0 room -> [subject, nickname]
    this.watchdog = null;
    this.stopping = false;
  }

  send(type, cls, fields) {
    if (!this.stopping) this.socket.write(frame(type, cls, fields));
  }

  start() {
    this.armWatchdog();
    this.send(T.TYPE_BACKEND_CONFIG, M.BackendConfig, {
      config: '[features]\nreceipts=1\nmuc=1\n\n[registration]\nneedPassword=0\n',
    });
    this.send(T.TYPE_ROOM_LIST, M.RoomList, { room: [ECHO], name: ['Echo room'] });
  }

  armWatchdog() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      log('error', `no PING for ${3 * this.pingInterval} s (3 intervals): giving up`);
      this.stop(1);
    }, 3 * this.pingInterval * 1000);
  }

  stop(code) {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.watchdog);
    process.exitCode = code;
    this.socket.end();
    this.socket.destroySoon && this.socket.destroySoon();
  }

  data(chunkBytes) {
    let packets;
    try {
      packets = this.decoder.feed(chunkBytes);
    } catch (e) {
      log('error', e.message);
      this.stop(1);
      return;
    }
    for (const [type, payload] of packets) {
      if (this.stopping) break;
      try {
        this.dispatch(type, payload);
      } catch (e) {
        log('error', `handler for type ${type} failed: ${e.stack}`);
      }
    }
  }

  dispatch(type, p) {
    switch (type) {
      case T.TYPE_PING: {
        this.armWatchdog();
        const usage = memory();
        this.send(T.TYPE_PONG);
        this.send(T.TYPE_STATS, M.Stats, { res: usage.res, init_res: this.initialRes, shared: usage.shared, id: String(process.pid) });
        break;
      }
      case T.TYPE_EXIT:
        log('info', 'EXIT received');
        this.stop(0);
        break;
      case T.TYPE_LOGIN:
        this.login(p);
        break;
      case T.TYPE_LOGOUT:
        this.users.delete(p.user);
        for (const key of [...this.rooms.keys()]) if (key.startsWith(p.user + '\0')) this.rooms.delete(key);
        log('info', `${p.user} logged out`);
        break;
      case T.TYPE_CONV_MESSAGE:
        this.message(p);
        break;
      case T.TYPE_BUDDY_TYPING:
      case T.TYPE_BUDDY_TYPED:
      case T.TYPE_BUDDY_STOPPED_TYPING:
        this.send(type, M.Buddy, { userName: p.userName, buddyName: p.buddyName });
        break;
      case T.TYPE_ATTENTION:
        this.send(T.TYPE_ATTENTION, M.ConversationMessage, { userName: p.userName, buddyName: p.buddyName, message: p.message });
        break;
      case T.TYPE_BUDDY_CHANGED: {
        const fields = { userName: p.userName, buddyName: p.buddyName, group: p.group, status: STATUS.STATUS_ONLINE };
        if (has(p, 'alias')) fields.alias = p.alias;
        if (has(p, 'blocked')) fields.blocked = p.blocked;
        this.send(T.TYPE_BUDDY_CHANGED, M.Buddy, fields);
        break;
      }
      case T.TYPE_JOIN_ROOM:
        this.joinRoom(p);
        break;
      case T.TYPE_LEAVE_ROOM:
        this.rooms.delete(p.userName + '\0' + p.room);
        break;
      case T.TYPE_ROOM_SUBJECT_CHANGED: {
        const key = p.userName + '\0' + p.buddyName;
        const nickname = this.rooms.get(key) || this.users.get(p.userName) || p.userName;
        this.subjects.set(key, [p.message, nickname]);
        this.send(T.TYPE_ROOM_SUBJECT_CHANGED, M.ConversationMessage, { userName: p.userName, buddyName: p.buddyName, message: p.message, nickname });
        break;
      }
      case T.TYPE_VCARD:
        if (p.buddyName) {
          const name = p.buddyName;
          this.send(T.TYPE_VCARD, M.VCard, {
            userName: p.userName,
            buddyName: name,
            id: p.id,
            fullname: name === ECHO ? 'Echo' : `Echo of ${name}`,
            nickname: name,
            photo: avatar(name),
          });
        } else {
          log('info', `${p.userName} updated their vCard (nickname ${JSON.stringify(p.nickname)})`);
        }
        break;
      case T.TYPE_STATUS_CHANGED:
        log('info', `${p.userName} is now status ${p.status} (${JSON.stringify(p.statusMessage)})`);
        break;
      default:
        break; // BUDDY_REMOVED, BUDDIES, file transfer, unknown: nothing to do
    }
  }

  login(p) {
    if (p.legacyName.toLowerCase().includes('fail') || p.password.toLowerCase().includes('fail')) {
      log('info', `refusing login of ${p.user} (asked to fail)`);
      this.send(T.TYPE_DISCONNECTED, M.Disconnected, {
        user: p.user,
        error: ERROR.CONNECTION_ERROR_AUTHENTICATION_FAILED,
        message: 'the echo network refuses this account',
      });
      return;
    }
    this.users.set(p.user, p.legacyName);
    log('info', `${p.user} logged in as ${p.legacyName}`);
    this.send(T.TYPE_CONNECTED, M.Connected, { user: p.user });
    this.send(T.TYPE_BUDDY_CHANGED, M.Buddy, {
      userName: p.user,
      buddyName: ECHO,
      alias: 'Echo',
      group: ['Echo'],
      status: STATUS.STATUS_ONLINE,
      statusMessage: 'I repeat everything',
    });
  }

  message(p) {
    if (has(p, 'id') && p.id) {
      this.send(T.TYPE_CONV_MESSAGE_ACK, M.ConversationMessage, { userName: p.userName, buddyName: p.buddyName, message: '', id: p.id });
    }
    const extra = has(p, 'xhtml') ? { xhtml: p.xhtml } : {};
    const key = p.userName + '\0' + p.buddyName;
    if (this.rooms.has(key)) {
      for (const nickname of [this.rooms.get(key), ECHO]) {
        this.send(T.TYPE_CONV_MESSAGE, M.ConversationMessage, { userName: p.userName, buddyName: p.buddyName, message: p.message, nickname, ...extra });
      }
    } else {
      this.send(T.TYPE_CONV_MESSAGE, M.ConversationMessage, { userName: p.userName, buddyName: p.buddyName, message: p.message, ...extra });
    }
  }

  joinRoom(p) {
    const participant = (nickname, flag) => ({
      userName: p.userName,
      room: p.room,
      nickname,
      flag,
      status: STATUS.STATUS_ONLINE,
    });
    this.send(T.TYPE_PARTICIPANT_CHANGED, M.Participant, participant(ECHO, FLAG.PARTICIPANT_FLAG_MODERATOR));
    if (p.nickname.toLowerCase() === ECHO) {
      this.send(T.TYPE_PARTICIPANT_CHANGED, M.Participant, participant(p.nickname, FLAG.PARTICIPANT_FLAG_CONFLICT));
      return;
    }
    const key = p.userName + '\0' + p.room;
    this.rooms.set(key, p.nickname);
    this.send(T.TYPE_PARTICIPANT_CHANGED, M.Participant, participant(p.nickname, FLAG.PARTICIPANT_FLAG_ME));
    let subject = this.subjects.get(key);
    if (!subject && p.room === ECHO) subject = [ECHO_ROOM_SUBJECT, ECHO];
    if (subject) {
      this.send(T.TYPE_ROOM_SUBJECT_CHANGED, M.ConversationMessage, { userName: p.userName, buddyName: p.room, message: subject[0], nickname: subject[1] });
    }
  }
}

// ---------------------------------------------------------------------------

function main() {
  const args = parseArguments(process.argv.slice(2));
  backendTag = args.backendId || '-';
  let pingInterval = 20;
  let maxFrameSize = 16 * 1024 * 1024;
  if (args.config) {
    let service;
    try {
      service = readIni(args.config).service || {};
    } catch (e) {
      log('critical', `cannot read the configuration file: ${e.message}`);
      process.exit(2);
    }
    if (service.ping_interval !== undefined) {
      pingInterval = parseFloat(service.ping_interval);
      if (!(pingInterval > 0)) {
        log('critical', `[service] ping_interval: expected a positive number, found ${JSON.stringify(service.ping_interval)}`);
        process.exit(2);
      }
    }
    maxFrameSize = parseSize(service.max_frame_size, maxFrameSize);
  }
  log('info', `backend ${backendTag} starting (pid ${process.pid}), connecting to ${args.host}:${args.port}`);
  const socket = net.connect({ host: args.host, port: args.port });
  const backend = new EchoBackend(socket, pingInterval, maxFrameSize);
  socket.setNoDelay(true);
  let connected = false;
  socket.on('connect', () => {
    connected = true;
    log('info', `connected to the main instance (ping interval ${pingInterval} s)`);
    backend.start();
  });
  socket.on('data', (data) => backend.data(data));
  socket.on('end', () => {
    if (!backend.stopping) log('info', 'the main instance closed the connection');
    backend.stop(process.exitCode || 0);
  });
  socket.on('error', (e) => {
    clearTimeout(backend.watchdog);
    if (connected) {
      // The main instance went away (reset, broken pipe): the same as EOF.
      log('info', `connection to the main instance lost: ${e.message}`);
      backend.stopping = true;
      if (process.exitCode === undefined) process.exitCode = 0;
    } else {
      log('critical', `cannot connect to the main instance at ${args.host}:${args.port}: ${e.message}`);
      process.exitCode = 1;
    }
    socket.destroy();
  });
  socket.on('close', () => {
    clearTimeout(backend.watchdog);
  });
}

main();
