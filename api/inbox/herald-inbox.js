// <herald-inbox api="https://herald.example.com" token="USER TOKEN">: a bell with the
// unread count and a list of the user's in-app notifications that updates live
// (Server-Sent Events from /v1/inbox/stream). No dependencies.
//
// Events dispatched on the element: "herald-inbox:counts" (detail: {unseen, unread,
// total}) and "herald-inbox:error" (detail: {status}) when the token is refused.
(() => {
  "use strict";
  if (customElements.get("herald-inbox")) return;

  const STYLE = `
    :host { position: relative; display: inline-block; font: inherit; color: #1b1b1f; }
    button { font: inherit; cursor: pointer; }
    button:focus-visible, a:focus-visible { outline: 3px solid #1d4ed8; outline-offset: 2px; }
    .bell { position: relative; background: none; border: 1px solid #9ca3af; border-radius: 999px;
      width: 2.5rem; height: 2.5rem; display: inline-flex; align-items: center; justify-content: center; }
    .bell svg { width: 1.25rem; height: 1.25rem; }
    .badge { position: absolute; top: -0.35rem; right: -0.35rem; min-width: 1.2rem; padding: 0 0.3rem;
      border-radius: 999px; background: #b91c1c; color: #fff; font-size: 0.75rem; line-height: 1.2rem;
      text-align: center; }
    .badge[hidden] { display: none; }
    .panel { position: absolute; right: 0; z-index: 1000; width: min(24rem, 90vw); max-height: 28rem;
      overflow: auto; margin-top: 0.5rem; background: #fff; border: 1px solid #9ca3af;
      border-radius: 0.5rem; box-shadow: 0 8px 24px rgba(0,0,0,.15); }
    .panel[hidden] { display: none; }
    header { display: flex; justify-content: space-between; align-items: center; gap: 0.5rem;
      padding: 0.5rem 0.75rem; border-bottom: 1px solid #e5e7eb; }
    h2 { font-size: 1rem; margin: 0; }
    ul { list-style: none; margin: 0; padding: 0; }
    li { display: flex; gap: 0.5rem; padding: 0.5rem 0.75rem; border-bottom: 1px solid #e5e7eb; }
    li.unread { background: #eff6ff; }
    .open { flex: 1; text-align: left; background: none; border: 0; padding: 0; color: inherit; }
    .title { display: block; font-weight: 600; }
    li:not(.unread) .title { font-weight: 400; }
    .body { display: block; font-size: 0.875rem; color: #374151; }
    .state { font-size: 0.75rem; color: #374151; }
    .link { font-size: 0.875rem; color: #1d4ed8; }
    .small { background: none; border: 1px solid #9ca3af; border-radius: 0.25rem; font-size: 0.8rem;
      padding: 0.1rem 0.4rem; color: #1b1b1f; align-self: flex-start; }
    .empty { padding: 1rem 0.75rem; color: #374151; }
    .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
      white-space: nowrap; }
  `;
  const BELL = '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path fill="currentColor" ' +
    'd="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z"/></svg>';

  let instances = 0;

  class HeraldInbox extends HTMLElement {
    static get observedAttributes() { return ["api", "token"]; }

    constructor() {
      super();
      this.n = ++instances;
      this.messages = new Map(); // id -> message, newest first by created_at
      this.counts = { unseen: 0, unread: 0, total: 0 };
      this.source = null;
      const root = this.attachShadow({ mode: "open" });
      const panelId = `herald-inbox-panel-${this.n}`;
      root.innerHTML = `
        <style>${STYLE}</style>
        <button class="bell" type="button" aria-expanded="false" aria-controls="${panelId}">
          ${BELL}<span class="sr label">Notifications</span><span class="badge" hidden aria-hidden="true"></span>
        </button>
        <span class="sr live" role="status" aria-live="polite"></span>
        <section class="panel" id="${panelId}" hidden aria-label="Notifications">
          <header>
            <h2 tabindex="-1">Notifications</h2>
            <button class="small all" type="button">Mark all read</button>
          </header>
          <ul></ul>
          <p class="empty">No notifications.</p>
        </section>`;
      this.bell = root.querySelector(".bell");
      this.badge = root.querySelector(".badge");
      this.label = root.querySelector(".label");
      this.live = root.querySelector(".live");
      this.panel = root.querySelector(".panel");
      this.heading = root.querySelector("h2");
      this.list = root.querySelector("ul");
      this.empty = root.querySelector(".empty");
      this.bell.addEventListener("click", () => this.toggle());
      root.querySelector(".all").addEventListener("click", () => this.bulk("read"));
      this.panel.addEventListener("keydown", (e) => {
        if (e.key === "Escape") { this.toggle(false); this.bell.focus(); }
      });
      this.list.addEventListener("click", (e) => this.onListClick(e));
    }

    connectedCallback() { this.start(); }
    disconnectedCallback() { this.stop(); }
    attributeChangedCallback(_name, old, value) { if (old !== value && this.isConnected) this.start(); }

    get base() { return (this.getAttribute("api") || "").replace(/\/+$/, ""); }
    get token() { return this.getAttribute("token") || ""; }

    stop() { if (this.source) { this.source.close(); this.source = null; } }

    async start() {
      this.stop();
      if (!this.token) return;
      this.messages.clear();
      this.render();
      await this.load();
      const url = `${this.base}/v1/inbox/stream?token=${encodeURIComponent(this.token)}`;
      const source = new EventSource(url);
      this.source = source;
      const on = (type, fn) => source.addEventListener(type, (e) => fn(JSON.parse(e.data)));
      on("message.created", (m) => this.upsert(m));
      on("message.updated", (m) => this.upsert(m));
      on("counts", (c) => this.setCounts(c));
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) {
          this.dispatchEvent(new CustomEvent("herald-inbox:error", { detail: { status: 0 } }));
        }
      });
    }

    async call(method, path, body) {
      const response = await fetch(`${this.base}${path}`, {
        method,
        headers: { Authorization: `Bearer ${this.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      if (!response.ok) {
        this.dispatchEvent(new CustomEvent("herald-inbox:error", { detail: { status: response.status } }));
        throw new Error(`${method} ${path}: ${response.status}`);
      }
      return response.status === 204 ? null : response.json();
    }

    async load() {
      try {
        const page = await this.call("GET", "/v1/inbox/messages?filter=all&archived=false");
        for (const m of page.items) this.messages.set(m.id, m);
        if (page.counts) this.setCounts(page.counts);
        this.render();
      } catch (_) { /* the stream still fills the list */ }
    }

    upsert(m) {
      if (m.archived_at) this.messages.delete(m.id); else this.messages.set(m.id, m);
      this.render();
      if (!this.panel.hidden && !m.seen_at && !m.archived_at) this.markSeen([m.id]);
    }

    setCounts(c) {
      const changed = c.unread !== this.counts.unread;
      this.counts = c;
      const unread = c.unread || 0;
      this.badge.hidden = unread === 0;
      this.badge.textContent = unread > 99 ? "99+" : String(unread);
      const words = unread === 0 ? "no unread" : `${unread} unread`;
      this.label.textContent = `Notifications, ${words}`;
      if (changed) this.live.textContent = `${unread} unread notification${unread === 1 ? "" : "s"}`;
      this.dispatchEvent(new CustomEvent("herald-inbox:counts", { detail: c }));
    }

    toggle(open = this.panel.hidden) {
      this.panel.hidden = !open;
      this.bell.setAttribute("aria-expanded", String(open));
      if (open) {
        this.heading.focus();
        const unseen = [...this.messages.values()].filter((m) => !m.seen_at).map((m) => m.id);
        if (unseen.length) this.markSeen(unseen);
      }
    }

    markSeen(ids) { this.call("POST", "/v1/inbox/messages/bulk", { action: "seen", ids }).catch(() => {}); }

    bulk(action) { this.call("POST", "/v1/inbox/messages/bulk", { action }).catch(() => {}); }

    async onListClick(e) {
      const button = e.target.closest("button[data-action]");
      if (!button) return;
      const item = button.closest("li");
      const id = item.dataset.id;
      const action = button.dataset.action;
      if (action === "archive") {
        await this.call("POST", `/v1/inbox/messages/${encodeURIComponent(id)}/archive`).catch(() => {});
        this.messages.delete(id);
        this.render(); // focus moves to the next message (render)
        return;
      }
      const m = this.messages.get(id);
      const read = action === "toggle" ? (m && m.read_at ? "unread" : "read") : "read";
      const updated = await this.call("POST", `/v1/inbox/messages/${encodeURIComponent(id)}/${read}`).catch(() => null);
      if (updated && updated.message) this.upsert(updated.message);
      if (updated && updated.counts) this.setCounts(updated.counts);
    }

    render() {
      const focused = this.shadowRoot.activeElement;
      const row = focused && focused.closest("li");
      // Where focus goes if its message leaves (archived here or from another tab): the
      // next message, else the one before, else the heading; never nowhere.
      const near = row ? [row.nextElementSibling, row.previousElementSibling].filter(Boolean).map((li) => li.dataset.id) : [];
      const items = [...this.messages.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
      this.list.replaceChildren(...items.map((m) => this.item(m)));
      this.empty.hidden = items.length > 0;
      if (row) {
        const find = (id, selector) => this.list.querySelector(`li[data-id="${CSS.escape(id)}"] ${selector}`);
        const again = find(row.dataset.id, `[data-action="${focused.dataset.action}"]`)
          || near.map((id) => find(id, ".open")).find(Boolean);
        (again || this.heading).focus();
      }
    }

    item(m) {
      const li = document.createElement("li");
      li.dataset.id = m.id;
      if (!m.read_at) li.classList.add("unread");
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open";
      open.dataset.action = "read";
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = m.title;
      const body = document.createElement("span");
      body.className = "body";
      body.textContent = m.body;
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = m.read_at ? "Read" : "Unread";
      open.append(title, body, state);
      const column = document.createElement("div");
      column.style.flex = "1";
      column.append(open);
      if (m.action_url && /^https?:\/\//i.test(m.action_url)) {
        const link = document.createElement("a");
        link.className = "link";
        link.href = m.action_url;
        link.textContent = "Open";
        link.setAttribute("aria-label", `Open: ${m.title}`);
        column.append(link);
      }
      const toggle = document.createElement("button");
      toggle.type = "button";
      toggle.className = "small";
      toggle.dataset.action = "toggle";
      toggle.textContent = m.read_at ? "Mark unread" : "Mark read";
      toggle.setAttribute("aria-label", `${toggle.textContent}: ${m.title}`);
      const archive = document.createElement("button");
      archive.type = "button";
      archive.className = "small";
      archive.dataset.action = "archive";
      archive.textContent = "Archive";
      archive.setAttribute("aria-label", `Archive: ${m.title}`);
      li.append(column, toggle, archive);
      return li;
    }
  }

  customElements.define("herald-inbox", HeraldInbox);
})();
