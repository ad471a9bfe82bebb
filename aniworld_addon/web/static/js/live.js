// The WebSocket client: joins rooms, hands each {type, timestamp, data} message to listeners,
// reconnects with exponential backoff (and at once when the browser comes back online).
// Every connect, the first included, emits "reconnected": what changed between the page's
// render and the socket's open is in no event, so pages re-read what they show. A close for
// a credential that ended (1008: logout elsewhere, session expiry) is final: onState("ended").

export class LiveClient {
  constructor(url, rooms, { onState = () => {} } = {}) {
    this.url = url;
    this.rooms = rooms;
    this.onState = onState;
    this.listeners = new Map();
    this.attempt = 0;
    this.timer = null;
    this.socket = null;
    this.closed = false;
    this.everConnected = false;
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("pagehide", () => this.close());
  }

  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type).delete(listener);
  }

  emit(type, message) {
    for (const key of [type, "*"]) {
      for (const listener of this.listeners.get(key) || []) {
        try {
          listener(message.data || {}, message);
        } catch (err) {
          console.warn("live listener failed", type, err);
        }
      }
    }
  }

  connect() {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.onState(this.everConnected ? "offline" : "connecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (err) {
      this.schedule();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.everConnected = true;
      for (const room of this.rooms) socket.send(JSON.stringify({ action: "join", room }));
      this.onState("online");
      // Events may have been missed before this open: pages re-read what they show.
      this.emit("reconnected", { data: {} });
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (message && typeof message.type === "string") this.emit(message.type, message);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closed) return;
      if (event.code === 1008) {
        // The server closed it for the credential: retrying would be refused forever.
        this.closed = true;
        this.onState("ended");
        return;
      }
      this.onState("offline");
      this.schedule();
    });
  }

  schedule() {
    // 1 s, 2 s, 4 s ... capped at 30 s, with jitter so many tabs do not reconnect in step.
    const delay = Math.min(30000, 1000 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt = Math.min(this.attempt + 1, 10);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.closed || (this.socket && this.socket.readyState <= WebSocket.OPEN)) return;
    this.attempt = 0;
    this.connect();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "page closed");
  }
}
