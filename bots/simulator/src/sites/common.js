// aap-simulator: what the page scripts of every look-alike site share. Each site's page.rs
// serves this file in front of its own assets/app.js, in the same <script> element, so the
// pages load exactly the requests and markup they did before; the helpers sit under one
// global, `window.aapSim`, the only name this file adds to the page. What differs from site to
// site (markup, classes, citation chips) stays in the site's app.js and comes in here as
// arguments.
window.aapSim = (() => {
  'use strict';

  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&#39;');
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
      const r = (Math.random() * 16) | 0;
      return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16);
    });
  }

  // A chat composer's keys: Enter sends (calls `send`), Shift+Enter starts a new line, and the
  // Enter that ends an IME composition is left to the IME.
  function sendOnEnter(composer, send) {
    composer.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      }
    });
  }

  const HEADING = /^(#{1,6})\s+(.*)$/;
  // `- item`, `* item`, and `1. item` (group 1: the number, only for ordered items).
  const LIST_ITEM = /^(?:[-*]|(\d+)\.)\s+(.*)$/;

  // The plain markup of each block, for a site that adds no classes.
  const PLAIN = {
    ordered: false,
    hideOpenCitation: false,
    paragraph: (html) => '<p>' + html + '</p>',
    heading: (html, level) => '<h' + level + '>' + html + '</h' + level + '>',
    item: (html) => '<li>' + html + '</li>',
    list: (items, tag) => '<' + tag + '>' + items + '</' + tag + '>',
  };

  // The small Markdown the simulated answers are written in, as one HTML string per block:
  // paragraphs (consecutive lines joined by a space), `#` to `######` headings, and `-` / `*`
  // lists. `inline(text)` renders the text inside a block (escaping it is its job: each site
  // renders its own citation chips there). `options` override PLAIN above:
  // - ordered: `1.` lines make an <ol> (otherwise they are paragraph text, as on sites whose
  //   renderer knows only bullets);
  // - hideOpenCitation: a citation marker still open at the end of the text (its \ue201 not yet
  //   streamed) is left out until it is whole;
  // - paragraph(html), heading(html, level), item(html): one block or list item;
  // - list(items, tag): a whole list, `items` being the item() strings joined, `tag` 'ul'/'ol'.
  function markdownBlocks(source, inline, options) {
    const o = Object.assign({}, PLAIN, options);
    if (o.hideOpenCitation) {
      const open = source.lastIndexOf('\ue200');
      if (open > source.lastIndexOf('\ue201')) source = source.slice(0, open);
    }
    const blocks = [];
    let paragraph = [];
    let list = null;
    const flushParagraph = () => {
      if (paragraph.length) blocks.push(o.paragraph(inline(paragraph.join(' '))));
      paragraph = [];
    };
    const flushList = () => {
      if (list) blocks.push(o.list(list.items.map((item) => o.item(inline(item))).join(''), list.tag));
      list = null;
    };
    for (const line of source.split('\n')) {
      const text = line.trim();
      let match;
      if (!text) {
        flushParagraph();
        flushList();
      } else if ((match = HEADING.exec(text))) {
        flushParagraph();
        flushList();
        blocks.push(o.heading(inline(match[2]), match[1].length));
      } else if ((match = LIST_ITEM.exec(text)) && (o.ordered || !match[1])) {
        flushParagraph();
        const tag = match[1] ? 'ol' : 'ul';
        if (!list || list.tag !== tag) {
          flushList();
          list = { tag, items: [] };
        }
        list.items.push(match[2]);
      } else {
        flushList();
        paragraph.push(text);
      }
    }
    flushParagraph();
    flushList();
    return blocks;
  }

  // The blocks of markdownBlocks() as one HTML string.
  function renderMarkdown(source, inline, options) {
    return markdownBlocks(source, inline, options).join('');
  }

  // POSTs `body` as JSON to an answer endpoint that replies with server-sent events, with the
  // page's cookies; `signal` aborts it (the Stop button).
  function postForEvents(url, signal, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      signal,
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(body),
    });
  }

  // Reads a server-sent-events body to its end, calling onEvent(payload, event) with the JSON
  // data of each event and its `event:` name ('message' when it has none). An event without
  // data, or whose data is not JSON, is passed over; `data: [DONE]` (OpenAI's end marker) ends
  // the stream, and so does onEvent returning false. A failed read (the connection lost, the
  // request aborted) rejects.
  //
  // A page whose tab another window has hidden (window.aapSimHoldWhileHidden, set by
  // interrupt.js) takes in no event until it shows again: the real sites render their stream
  // in animation frames, which a background tab does not get.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const raw = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        let data = '';
        for (const line of raw.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (data === '[DONE]') return;
        if (!data) continue;
        let payload;
        try {
          payload = JSON.parse(data);
        } catch (_) {
          continue;
        }
        await untilShown();
        if (onEvent(payload, event) === false) return;
      }
    }
  }

  function untilShown() {
    if (!window.aapSimHoldWhileHidden || !document.hidden) return Promise.resolve();
    return new Promise((resolve) => {
      const shown = () => {
        if (document.hidden) return;
        document.removeEventListener('visibilitychange', shown);
        resolve();
      };
      document.addEventListener('visibilitychange', shown);
    });
  }

  return { escapeHtml, uuid, sendOnEnter, markdownBlocks, renderMarkdown, postForEvents, readEvents };
})();
