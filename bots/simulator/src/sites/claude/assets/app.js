// aap-simulator chat page. Plain DOM code standing in for claude.ai's React app: it keeps the
// selectors and the timing shape that browser automation sees on the real site (see the module
// documentation of `sites::claude` for the evidence). Markup variants (window.__claudeSim.variant):
//   current                     today's look-alike
//   redesign                    other class names and test ids, as after a site redesign
//   timeline-grid-2026          the 2026 two-row grid: blocks in .row-start-1 behind
//                               button.group/status toggles, the answer in .row-start-2, result
//                               rows without links
//   legacy-font-claude-message  the older .font-claude-message markup, plain links as citations
//   testid-no-streaming-attr    test ids, no data-is-streaming; the stop control clears between
//                               tool phases and before the text has finished rendering
// `late_sources`: the search results reach the page only after the answer has finished.
(() => {
  'use strict';

  const { escapeHtml, uuid, readEvents, sendOnEnter, postForEvents } = window.aapSim;
  const SIM = window.__claudeSim || {};
  const VARIANT = SIM.variant || 'current';
  const REDESIGN = VARIANT === 'redesign';
  const GRID = VARIANT === 'timeline-grid-2026';
  const LEGACY = VARIANT === 'legacy-font-claude-message';
  const TESTIDS = VARIANT === 'testid-no-streaming-attr';
  // One "Searched the web" block per message with a row per query (the timeline), or one block
  // per search call.
  const GROUPED_SEARCH = GRID || TESTIDS;
  const LATE_SOURCES = !!SIM.late_sources;
  // How long after the action bar late search results arrive.
  const LATE_SOURCES_MS = 900;
  // testid-no-streaming-attr renders the text smoothly, at most this many characters per tick:
  // it falls behind the stream, so the stop control is gone while the last words still appear.
  const REVEAL_CHARS = 25;
  const REVEAL_TICK_MS = 50;
  const ORG = SIM.org || '00000000-0000-4000-8000-000000000000';
  const INTERRUPTED =
    'Claude\u2019s response was interrupted. This can be caused by network problems or exceeding the maximum conversation length. Please contact support if the issue persists.';
  // support.claude.com, "Understanding Claude error messages": a message over the input limit.
  const LENGTH_LIMIT =
    'Your message will exceed the length limit for this chat. Try attaching fewer or smaller files or starting a new conversation.';
  // A prompt declined under the usage policy (stop reason `refusal`): Claude Code's words
  // (public scripts, 2025-07 to 2026-05); claude.ai's own are not quoted publicly.
  const DECLINED =
    'Claude is unable to respond to this request, which appears to violate our Usage Policy (https://www.anthropic.com/legal/aup). Please start a new chat.';
  // Under an answer cut at the model's output limit (anthropics/claude-code issue 861, 2025-04).
  const MAX_LENGTH =
    'This response paused because Claude reached its max length for a message. Hit continue to nudge Claude along.';
  const EMPTY_COMPOSER =
    '<p data-placeholder="How can I help you today?" class="is-empty is-editor-empty"><br class="ProseMirror-trailingBreak"></p>';
  const ICON_SEND =
    '<svg width="16" height="16" viewBox="0 0 20 20" aria-hidden="true"><path d="M10 16V4M5 9l5-5 5 5" stroke="currentColor" stroke-width="2" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>';
  const ICON_STOP =
    '<svg width="16" height="16" viewBox="0 0 20 20" aria-hidden="true"><rect x="5" y="5" width="10" height="10" rx="1.5" fill="currentColor"/></svg>';
  // A transparent pixel: favicons never leave the machine.
  const FAVICON = 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7';
  const CITE = /\ue200cite\ue202([0-9]+)\ue201/g;

  const composer = document.querySelector('[contenteditable="true"]');
  const thread = document.getElementById('thread');
  const messages = document.getElementById('messages');
  const bannerSlot = document.getElementById('banner-slot');
  const submitSlot = document.getElementById('submit-slot');
  const recents = document.getElementById('recents');
  const chatTitle = document.getElementById('chat-title');

  let active = null; // the answer being streamed: { controller }
  let conversationId = null;
  let parentUuid = '00000000-0000-4000-8000-000000000000';
  let renderCount = 0;

  function el(tag, attrs, html) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    if (html !== undefined) node.innerHTML = html;
    return node;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // ---- composer -----------------------------------------------------------------------------

  function composerText() {
    return composer.innerText.replace(/\u00a0/g, ' ').trim();
  }

  // The send and stop buttons are distinct nodes that replace each other in the same slot, as
  // React renders them: a reference to the stop button goes stale once the answer is done.
  function showSendButton() {
    let attrs = { type: 'button', class: 'send-button', 'aria-label': 'Send message' };
    if (REDESIGN) attrs = { type: 'button', class: 'send-button', 'aria-label': 'Send Message', 'data-testid': 'send-button' };
    if (LEGACY) attrs = { type: 'button', class: 'send-button bg-accent-main-000', 'aria-label': 'Send Message' };
    if (TESTIDS) attrs = { type: 'button', class: 'send-button', 'aria-label': 'Send message', 'data-testid': 'send-button' };
    const button = el('button', attrs, ICON_SEND);
    button.addEventListener('click', submit);
    submitSlot.replaceChildren(button);
    syncComposer();
  }

  function showStopButton() {
    if (submitSlot.querySelector('.stop-button')) return;
    let attrs = { type: 'button', class: 'stop-button', 'aria-label': 'Stop response' };
    if (REDESIGN) attrs = { type: 'button', class: 'stop-button', 'aria-label': 'Stop Response', 'data-testid': 'stop-button' };
    if (LEGACY) attrs = { type: 'button', class: 'stop-button', 'aria-label': 'Stop Response', 'data-state': 'closed' };
    if (TESTIDS) attrs = { type: 'button', class: 'stop-button', 'aria-label': 'Stop response', 'data-testid': 'stop-button' };
    const button = el('button', attrs, ICON_STOP);
    button.addEventListener('click', () => {
      if (active) active.controller.abort();
    });
    submitSlot.replaceChildren(button);
  }

  // Neither control: the stop button cleared while the answer goes on (between tool phases,
  // before the last words render).
  function clearStopButton() {
    submitSlot.replaceChildren();
  }

  function syncComposer() {
    const empty = composerText() === '';
    if (empty && !composer.querySelector('p')) composer.innerHTML = EMPTY_COMPOSER;
    const first = composer.querySelector('p');
    if (first) first.classList.toggle('is-empty', empty);
    const button = submitSlot.querySelector('.send-button');
    if (button) button.disabled = empty;
  }

  composer.addEventListener('input', syncComposer);
  sendOnEnter(composer, submit);

  function submit() {
    if (active) return;
    const text = composerText();
    if (!text) return;
    composer.innerHTML = EMPTY_COMPOSER;
    syncComposer();
    ask(text);
  }

  // ---- turns --------------------------------------------------------------------------------

  function userTurn(text) {
    const turn = el('div', { 'data-test-render-count': String(++renderCount), class: 'user-turn' });
    turn.innerHTML =
      '<h2 class="sr-only">You said:</h2>' +
      '<div class="user-bubble"><div data-testid="user-message" class="font-large !font-user-message"><p class="whitespace-pre-wrap break-words"></p></div></div>';
    turn.querySelector('p').textContent = text;
    return turn;
  }

  // The assistant's turn: `turn` (around the message, holds the action bar), `streaming` (the
  // message container), `blocks` (where thinking and tool blocks go), `answer` (where the
  // answer's markdown goes).
  function assistantTurn() {
    if (GRID) {
      const turn = el('div', { class: 'mb-1 mt-6 group assistant-turn' });
      const streaming = el('div', { 'data-is-streaming': 'true', class: 'group relative pb-3', style: 'opacity: 1; transform: none;' });
      streaming.innerHTML =
        '<div class="font-claude-response relative leading-[1.65rem]"><div><div class="grid grid-rows-[auto_auto]">' +
        '<div class="row-start-1"></div><div class="row-start-2"></div></div></div></div>';
      turn.appendChild(streaming);
      return { turn, streaming, blocks: streaming.querySelector('.row-start-1'), answer: streaming.querySelector('.row-start-2'), markdown: null };
    }
    if (LEGACY) {
      const turn = el('div', { class: 'group relative -tracking-[0.015em] assistant-turn' });
      const streaming = el('div', { 'data-is-streaming': 'true' });
      const body = el('div', { class: 'font-claude-message relative leading-[1.65rem]' });
      streaming.appendChild(body);
      turn.appendChild(streaming);
      return { turn, streaming, blocks: body, answer: body, markdown: null };
    }
    if (TESTIDS) {
      const turn = el('div', { 'data-test-render-count': String(++renderCount), class: 'assistant-turn' });
      const streaming = el('div', { 'data-testid': 'assistant-message', class: 'group relative pb-3' });
      streaming.innerHTML = '<div class="row-start-1"></div><div class="font-claude-response-body"></div>';
      turn.appendChild(streaming);
      return { turn, streaming, blocks: streaming.querySelector('.row-start-1'), answer: streaming.querySelector('.font-claude-response-body'), markdown: null };
    }
    const turn = el('div', { 'data-test-render-count': String(++renderCount), class: 'assistant-turn' });
    const streaming = REDESIGN
      ? el('div', { 'data-is-streaming': 'true', class: 'message-body', 'data-message-role': 'assistant' })
      : el('div', { 'data-is-streaming': 'true', class: 'group relative pb-3', style: 'opacity: 1; transform: none;' });
    const body = el('div', {
      class: REDESIGN ? 'font-claude-message' : 'font-claude-response relative leading-[1.65rem]',
    });
    if (!REDESIGN) turn.appendChild(el('h2', { class: 'sr-only' }, 'Claude responded:'));
    streaming.appendChild(body);
    turn.appendChild(streaming);
    return { turn, streaming, blocks: body, answer: body, markdown: null };
  }

  function markdownClass() {
    if (REDESIGN) return 'progressive-markdown';
    if (LEGACY) return 'grid-cols-1 grid gap-2.5 [&_>_*]:min-w-0';
    if (TESTIDS) return 'standard-markdown';
    if (GRID) return 'grid-cols-1 grid gap-2.5 [&_>_*]:min-w-0 standard-markdown';
    return 'grid-cols-1 grid gap-2.5 standard-markdown';
  }

  function answerBlock(turn) {
    if (!turn.markdown) {
      turn.markdown = el('div', { class: markdownClass() });
      // The legacy markup wraps the grid in a plain div.
      const holder = LEGACY ? el('div') : null;
      if (holder) holder.appendChild(turn.markdown);
      turn.answer.appendChild(holder || turn.markdown);
    }
    return turn.markdown;
  }

  // A document's card (an artifact, a presented file): its name and kind, a button that would
  // open its text in a side panel.
  function documentCard(turn, path) {
    const name = path.split('/').pop() || path;
    const kind = (name.split('.').pop() || 'file').toUpperCase();
    const card = el('button', { type: 'button', 'aria-label': 'Preview contents', 'data-testid': 'document-card', class: 'document-card' });
    const title = el('div', { class: 'line-clamp-1' });
    title.textContent = name;
    const about = el('div', { class: 'text-xs' });
    about.textContent = 'Document \u00b7 ' + kind;
    card.append(title, about);
    turn.answer.appendChild(card);
  }

  function showMessageError(turn, message) {
    const attrs = REDESIGN
      ? { class: 'message-error', 'data-testid': 'message-error' }
      : { role: 'alert', class: 'message-error' };
    const error = el('div', attrs);
    error.textContent = message;
    turn.turn.appendChild(error);
  }

  // Under an answer the model stopped at its output limit (`stop_reason` max_tokens), as
  // claude.ai words it (quoted in anthropics/claude-code issue 861 and in saved pages), with a
  // Continue button that asks the model to go on in a new turn.
  function showMaxLengthNotice() {
    const notice = el('div', { class: 'max-length-notice', 'data-testid': 'max-length-notice' });
    notice.appendChild(el('p', {}, MAX_LENGTH));
    const more = el('button', { type: 'button', class: 'continue-response' }, 'Continue');
    more.addEventListener('click', () => {
      notice.remove();
      ask('Continue');
    });
    notice.appendChild(more);
    messages.appendChild(notice);
  }

  function showLimitBanner(resetsAt) {
    const until = new Date(resetsAt * 1000).toLocaleTimeString('en-US', { hour: 'numeric', minute: '2-digit' });
    const attrs = REDESIGN
      ? { class: 'limit-banner', 'data-testid': 'usage-limit-banner' }
      : { role: 'alert', class: 'limit-banner' };
    const banner = el('div', attrs);
    banner.innerHTML = '<span></span><a href="/upgrade">Upgrade</a>';
    banner.querySelector('span').textContent = 'You are out of free messages until ' + until;
    bannerSlot.replaceChildren(banner);
  }

  // ---- collapsible blocks (the timeline's thinking and tool blocks) -----------------------

  // A `button.group/status` toggle and its collapsible body (grid-template-rows 0fr/1fr), as
  // the 2026 markup shows thinking, web search and tool calls alike.
  function collapsible(turn, label, onOpen) {
    const wrap = el('div', { class: 'timeline-block' });
    const toggle = el('button', { type: 'button', 'aria-expanded': 'false', class: 'group/status flex items-center gap-1' });
    toggle.innerHTML = '<span class="truncate font-base"></span>';
    toggle.querySelector('span').textContent = label;
    const body = el('div', { class: 'grid transition-[grid-template-rows] duration-300', style: 'grid-template-rows: 0fr' });
    const inner = el('div', { class: 'overflow-hidden' });
    body.appendChild(inner);
    wrap.appendChild(toggle);
    wrap.appendChild(body);
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      toggle.setAttribute('aria-expanded', String(open));
      body.style.gridTemplateRows = open ? '1fr' : '0fr';
      if (open && onOpen) onOpen();
    });
    turn.blocks.appendChild(wrap);
    return { wrap, toggle, inner, label: toggle.querySelector('span') };
  }

  // ---- thinking -----------------------------------------------------------------------------

  function thinkingBlock(turn) {
    const started = Date.now();
    if (GRID || TESTIDS) {
      const block = collapsible(turn, GRID ? 'Thinking\u2026' : 'Thinking about the question\u2026');
      const holder = el('div', { class: 'font-ui flex flex-col' });
      // The timeline's thinking text is a .standard-markdown of its own: the message's first.
      const content = GRID ? el('div', { class: 'grid-cols-1 grid gap-2.5 standard-markdown' }) : holder;
      if (GRID) holder.appendChild(content);
      block.inner.appendChild(holder);
      return { block: block.wrap, label: block.label, timer: null, content, text: '', started };
    }
    if (LEGACY) {
      const block = el('div', { class: 'ease-out rounded-lg border-0.5 border-border-300 transition-all flex flex-col thinking-box' });
      block.innerHTML =
        '<button type="button" class="group/row thinking-toggle"><span class="thinking-label">Thinking\u2026</span><span class="tabular-nums">0s</span></button>' +
        '<div class="overflow-y-auto"><div class="font-claude-response text-text-300"></div></div>';
      turn.blocks.appendChild(block);
      return { block, label: block.querySelector('.thinking-label'), timer: block.querySelector('.tabular-nums'), content: block.querySelector('.font-claude-response'), text: '', started };
    }
    let block;
    if (REDESIGN) {
      block = el('details', { class: 'reasoning-panel', 'data-testid': 'reasoning-block' });
      block.innerHTML = '<summary><span class="thinking-label">Thinking\u2026</span></summary>';
      const content = el('div', { class: 'progressive-markdown reasoning-content' });
      block.appendChild(content);
      turn.blocks.appendChild(block);
      return { block, label: block.querySelector('.thinking-label'), timer: null, content, text: '', started };
    }
    block = el('div', { class: 'thinking-block rounded-lg border-0.5 border-border-300 transition-all' });
    block.innerHTML =
      '<button type="button" class="thinking-toggle group/row" aria-expanded="false">' +
      '<span role="status" class="thinking-label">Thinking\u2026</span><span class="tabular-nums">0s</span></button>' +
      '<div class="thinking-content overflow-y-auto"></div>';
    const content = el('div', { class: 'grid-cols-1 grid gap-2.5 standard-markdown' });
    block.querySelector('.thinking-content').appendChild(content);
    const toggle = block.querySelector('button');
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      toggle.setAttribute('aria-expanded', String(open));
      block.classList.toggle('open', open);
    });
    turn.blocks.appendChild(block);
    return { block, label: block.querySelector('.thinking-label'), timer: block.querySelector('.tabular-nums'), content, text: '', started };
  }

  function updateThinking(thinking, done) {
    thinking.content.innerHTML = thinking.text
      .split(/\n{2,}/)
      .filter((p) => p.trim())
      .map((p) => '<p class="whitespace-pre-wrap break-words">' + escapeHtml(p.trim()) + '</p>')
      .join('');
    const seconds = Math.max(1, Math.round((Date.now() - thinking.started) / 1000));
    if (thinking.timer) thinking.timer.textContent = seconds + 's';
    if (done) thinking.label.textContent = 'Thought process';
  }

  // ---- web search ---------------------------------------------------------------------------

  // A search block: `calls` are the searches it shows ({query, results}), rendered into its
  // list only once the block is opened, as claude.ai's collapsed tool block does.
  function searchBlock(turn) {
    if (GROUPED_SEARCH && turn.search) return turn.search;
    const search = { calls: [], open: false, list: null, toggle: null, label: null, count: null };
    const render = () => {
      if (search.open) search.list.innerHTML = search.calls.map(callHtml).join('');
    };
    search.render = render;
    if (GROUPED_SEARCH) {
      const block = collapsible(turn, 'Searching the web', () => {
        search.open = true;
        render();
      });
      search.toggle = block.toggle;
      search.label = block.label;
      search.list = el('div', { 'data-timeline-text': '', class: 'group/timeline-text' });
      block.inner.appendChild(search.list);
      turn.search = search;
      return search;
    }
    let block;
    if (LEGACY) {
      block = el('div', { class: 'rounded-lg border-0.5 transition-all tool-box' });
      search.toggle = el('button', { type: 'button', class: 'group/status tool-toggle', 'aria-expanded': 'false' });
      search.toggle.innerHTML = '<div class="truncate">Searching the web</div><span class="result-count"></span>';
      search.list = el('div', { class: 'overflow-y-auto search-results', hidden: '' });
    } else {
      block = REDESIGN
        ? el('div', { class: 'web-search-block', 'data-testid': 'web-search-block' })
        : el('div', { class: 'tool-use-block' });
      search.toggle = REDESIGN
        ? el('button', { type: 'button', class: 'tool-toggle', 'data-testid': 'tool-use-toggle', 'aria-expanded': 'false' })
        : el('button', { type: 'button', class: 'group/status tool-toggle flex items-center', 'aria-expanded': 'false' });
      search.toggle.innerHTML = '<span class="truncate">Searching the web</span><span class="result-count"></span>';
      search.list = el('div', { class: 'search-results', hidden: '' });
    }
    search.label = search.toggle.querySelector('.truncate');
    search.count = search.toggle.querySelector('.result-count');
    block.appendChild(search.toggle);
    block.appendChild(search.list);
    search.toggle.addEventListener('click', () => {
      search.open = search.toggle.getAttribute('aria-expanded') !== 'true';
      search.toggle.setAttribute('aria-expanded', String(search.open));
      search.list.hidden = !search.open;
      render();
    });
    turn.blocks.appendChild(block);
    return search;
  }

  function searchQuery(search, call, query) {
    call.query = query;
    if (!GROUPED_SEARCH) search.label.textContent = query;
    search.render();
  }

  function searchResults(search, call, results) {
    call.results = results;
    call.done = true;
    if (GROUPED_SEARCH) search.label.textContent = 'Searched the web';
    else search.count.textContent = results.length + ' results';
    search.render();
  }

  function callHtml(call) {
    const rows = (call.results || []).map(resultRow).join('');
    if (!GROUPED_SEARCH) return rows;
    // The timeline: a row per query ("query / N results"), then its results.
    return (
      '<button type="button" class="group/row flex flex-row items-center"><span class="truncate">' + escapeHtml(call.query || '') +
      '</span><p class="text-text-400 text-xs">' + (call.done ? (call.results || []).length + ' results' : '') + '</p></button>' +
      '<div class="flex flex-col">' + rows + '</div>'
    );
  }

  function resultRow(result) {
    const href = escapeHtml(result.url);
    const domain = escapeHtml((result.metadata && result.metadata.site_domain) || '');
    const title = escapeHtml(result.title);
    const favicon = '<img alt="favicon" src="' + FAVICON + '" width="16" height="16">';
    if (REDESIGN) {
      return (
        '<a data-testid="search-result" class="source-row" href="' + href + '" target="_blank" rel="noopener noreferrer">' +
        '<span class="favicon" aria-hidden="true"></span><div class="source-title">' + title + '</div>' +
        '<div class="source-host">' + domain + '</div></a>'
      );
    }
    if (LEGACY) {
      return (
        '<a href="' + href + '" target="_blank" rel="noopener noreferrer" class="flex flex-row items-center gap-2 source-row">' +
        favicon + '<div class="truncate">' + title + '</div><div class="text-text-400 text-xs">' + domain + '</div></a>'
      );
    }
    if (GROUPED_SEARCH) {
      // Favicon, title and domain, and no link: the full address is only in the stream.
      return (
        '<div class="flex flex-row items-center gap-2 source-row">' + favicon + '<div class="truncate">' + title +
        '</div><div class="text-text-400 text-xs">' + domain + '</div></div>'
      );
    }
    return (
      '<a href="' + href + '" target="_blank" rel="noopener noreferrer" class="search-result">' +
      '<span class="favicon" aria-hidden="true"></span><span class="result-title truncate">' + title + '</span>' +
      '<span class="result-domain">' + domain + '</span></a>'
    );
  }

  // ---- markdown -----------------------------------------------------------------------------

  // The short site name claude.ai shows in a citation tag: "en.wikipedia.org" -> "wikipedia".
  function siteName(domain) {
    const parts = String(domain || '').split('.').filter(Boolean);
    return parts.length >= 2 ? parts[parts.length - 2] : parts[0] || 'source';
  }

  function chip(citation) {
    const href = escapeHtml(citation.url);
    const domain = (citation.metadata && citation.metadata.site_domain) || '';
    if (REDESIGN) {
      return (
        '<sup class="citation"><a data-testid="citation-link" href="' + href + '" target="_blank" rel="noopener noreferrer">' +
        (citation.number || 1) + '</a></sup>'
      );
    }
    if (LEGACY) {
      return '<a href="' + href + '" target="_blank" rel="noopener noreferrer" class="underline">' + escapeHtml(siteName(domain)) + '</a>';
    }
    const tag = GROUPED_SEARCH ? 'inline-flex' : 'citation-tag inline-flex';
    return (
      '<span class="' + tag + '" data-state="closed"><a href="' + href + '" target="_blank" rel="noopener noreferrer" ' +
      'class="group/tag relative inline-flex items-center overflow-hidden rounded-full"><span class="truncate">' +
      escapeHtml(siteName(domain)) + '</span></a></span>'
    );
  }

  function inline(text, refs) {
    return escapeHtml(text)
      .replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>')
      .replace(CITE, (_, index) => (refs[index] ? chip(refs[index]) : ''));
  }

  // claude.ai's renderer: numbered lists too, and its classes on every block.
  const MARKDOWN = {
    ordered: true,
    paragraph: (html) => '<p class="' + (LEGACY ? 'whitespace-pre-wrap' : 'whitespace-normal') + ' break-words">' + html + '</p>',
    heading: (html, level) => '<h' + level + ' class="text-text-100 mt-2 -mb-1 font-bold">' + html + '</h' + level + '>',
    item: (html) => '<li class="whitespace-normal break-words">' + html + '</li>',
    list: (items, tag) =>
      tag === 'ol'
        ? '<ol class="list-decimal space-y-1.5 pl-7">' + items + '</ol>'
        : '<ul class="list-disc space-y-1.5 pl-7">' + items + '</ul>',
  };

  function renderMarkdown(source, refs) {
    return window.aapSim.renderMarkdown(source, (text) => inline(text, refs), MARKDOWN);
  }

  // Shows the answer text so far; testid-no-streaming-attr reveals it REVEAL_CHARS at a time.
  function renderAnswer(state) {
    if (!TESTIDS) {
      answerBlock(state.turn).innerHTML = renderMarkdown(state.text, state.refs);
      return;
    }
    if (state.reveal) return;
    state.reveal = setInterval(() => {
      state.shown = Math.min(state.text.length, state.shown + REVEAL_CHARS);
      const open = state.text.lastIndexOf('\ue200', state.shown);
      if (open >= 0 && state.text.lastIndexOf('\ue201', state.shown) < open) {
        // Never half a citation tag: show it whole.
        state.shown = Math.max(state.shown, state.text.indexOf('\ue201', open) + 1 || state.shown);
      }
      answerBlock(state.turn).innerHTML = renderMarkdown(state.text.slice(0, state.shown), state.refs);
      if (state.shown >= state.text.length) {
        clearInterval(state.reveal);
        state.reveal = null;
      }
    }, REVEAL_TICK_MS);
  }

  // Resolves once the revealed text has caught up with the stream.
  async function revealed(state) {
    while (state.reveal) await sleep(REVEAL_TICK_MS);
  }

  // ---- after the answer ---------------------------------------------------------------------

  function actionBar(state) {
    let bar = el('div', { class: 'message-actions', role: 'group', 'aria-label': 'Message actions' });
    if (REDESIGN || LEGACY) bar = el('div', { class: REDESIGN ? 'message-actions' : 'flex message-actions' });
    if (GRID) bar = el('div', { class: 'flex items-center justify-between message-actions' });
    const copy = REDESIGN
      ? el('button', { type: 'button', 'data-testid': 'copy-response', 'aria-label': 'Copy response' }, 'Copy')
      : el('button', { type: 'button', 'data-testid': 'action-bar-copy', 'aria-label': 'Copy' }, 'Copy');
    copy.addEventListener('click', () => {
      const text = state.text.replace(CITE, '').trim();
      if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    });
    bar.appendChild(copy);
    if (!LEGACY) {
      bar.appendChild(el('button', { type: 'button', 'aria-label': 'Give positive feedback' }, '\u{1F44D}'));
      bar.appendChild(el('button', { type: 'button', 'aria-label': 'Give negative feedback' }, '\u{1F44E}'));
      bar.appendChild(el('button', { type: 'button', 'data-testid': REDESIGN ? 'retry-response' : 'action-bar-retry', 'aria-label': 'Retry' }, 'Retry'));
    }
    return bar;
  }

  function addRecent(id, title) {
    if (recents.querySelector('[data-conversation-id="' + id + '"]')) return;
    const item = el('li');
    const link = el('a', { href: '/chat/' + id, 'data-conversation-id': id });
    link.textContent = title.length > 40 ? title.slice(0, 40) + '\u2026' : title;
    item.appendChild(link);
    recents.prepend(item);
  }

  // ---- streaming ----------------------------------------------------------------------------

  function parseJson(text, fallback) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return fallback;
    }
  }

  // A search call's results, now or (late_sources) once the answer has finished.
  function deliverResults(state, search, call, results) {
    if (LATE_SOURCES) state.late.push(() => searchResults(search, call, results));
    else searchResults(search, call, results);
  }

  function apply(payload, state) {
    switch (payload.type) {
      case 'message_start': {
        state.turn = assistantTurn();
        messages.appendChild(state.turn.turn);
        state.turn.turn.scrollIntoView({ block: 'end' });
        if (location.pathname !== '/chat/' + conversationId) history.replaceState(null, '', '/chat/' + conversationId);
        return;
      }
      case 'content_block_start': {
        const block = payload.content_block || {};
        const entry = { type: block.type, name: block.name, json: '', id: block.id, toolUseId: block.tool_use_id };
        state.blocks[payload.index] = entry;
        if (block.type === 'thinking') {
          state.thinking = thinkingBlock(state.turn);
        } else if (block.type === 'tool_use' && block.name === 'web_search') {
          // The input is empty here: the query streams in input_json_delta fragments.
          const search = searchBlock(state.turn);
          const call = { query: '', results: [], done: false };
          search.calls.push(call);
          state.calls[block.id] = { search, call };
          search.render();
        } else if (block.type === 'text') {
          // The answer's markdown block is there from the start of the text, empty until the
          // first words (and empty for good when the answer has none).
          answerBlock(state.turn);
        }
        return;
      }
      case 'content_block_delta': {
        const delta = payload.delta || {};
        const entry = state.blocks[payload.index] || {};
        if (state.stopCleared) {
          // The next phase started: the stop control is back.
          state.stopCleared = false;
          showStopButton();
        }
        if (delta.type === 'thinking_delta' && state.thinking) {
          state.thinking.text += delta.thinking;
          updateThinking(state.thinking, false);
        } else if (delta.type === 'input_json_delta') {
          entry.json += delta.partial_json || '';
        } else if (delta.type === 'text_delta') {
          state.text += delta.text;
          renderAnswer(state);
        } else if (delta.type === 'citation_start_delta' && delta.citation) {
          state.open[delta.citation.uuid] = delta.citation;
        } else if (delta.type === 'citation_end_delta') {
          // The tag shows at the end of the words it backs.
          const citation = state.open[delta.citation_uuid];
          if (citation) {
            const known = state.refs.findIndex((ref) => ref.url === citation.url);
            const number = known >= 0 ? state.refs[known].number : new Set(state.refs.map((r) => r.url)).size + 1;
            state.refs.push(Object.assign({ number }, citation));
            state.text += '\ue200cite\ue202' + (state.refs.length - 1) + '\ue201';
            renderAnswer(state);
          }
        }
        return;
      }
      case 'content_block_stop': {
        const entry = state.blocks[payload.index] || {};
        if (entry.type === 'thinking' && state.thinking) updateThinking(state.thinking, true);
        if (entry.type === 'tool_use' && entry.name === 'web_search' && state.calls[entry.id]) {
          const { search, call } = state.calls[entry.id];
          searchQuery(search, call, (parseJson(entry.json || payload.buffered_input || '{}', {}) || {}).query || '');
        }
        if (entry.type === 'tool_use' && entry.name === 'present_files') {
          // Each presented file shows as a card in the message; its text stays in the panel.
          const input = parseJson(entry.json || payload.buffered_input || '{}', {}) || {};
          for (const path of input.filepaths || []) documentCard(state.turn, String(path));
        }
        if (entry.type === 'tool_result') {
          const tool = state.calls[entry.toolUseId];
          if (tool) deliverResults(state, tool.search, tool.call, parseJson(entry.json || '[]', []) || []);
          if (TESTIDS) {
            // Between tool phases the stop control clears until the next phase streams.
            state.stopCleared = true;
            clearStopButton();
          }
        }
        return;
      }
      case 'message_delta':
        if (payload.delta && payload.delta.stop_reason === 'max_tokens') state.cutShort = true;
        if (payload.delta && payload.delta.stop_reason === 'refusal') state.declined = true;
        return;
      case 'message_stop':
        state.complete = true;
        return;
      case 'error':
        state.error = (payload.error && payload.error.message) || INTERRUPTED;
        return;
      default:
    }
  }

  async function ask(text) {
    thread.classList.add('has-messages');
    bannerSlot.replaceChildren();
    const firstMessage = !conversationId;
    if (firstMessage) conversationId = uuid();
    messages.appendChild(userTurn(text));
    if (firstMessage) {
      chatTitle.textContent = text.length > 60 ? text.slice(0, 60) + '\u2026' : text;
      // The tab names the conversation too, as claude.ai's does: a prompt's words in the title.
      document.title = chatTitle.textContent + ' - Claude';
    }

    const controller = new AbortController();
    active = { controller };
    showStopButton();
    const state = {
      turn: null,
      text: '',
      refs: [],
      open: {},
      blocks: {},
      calls: {},
      late: [],
      shown: 0,
      reveal: null,
      stopCleared: false,
      thinking: null,
      error: null,
      complete: false,
      cutShort: false,
      declined: false,
    };
    let outcome = 'answered';
    try {
      const url = '/api/organizations/' + ORG + '/chat_conversations/' + conversationId + '/completion';
      const response = await postForEvents(url, controller.signal, {
        prompt: text,
        parent_message_uuid: parentUuid,
        timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
        model: SIM.model_id,
        rendering_mode: 'messages',
        attachments: [],
        files: [],
        tools: [{ name: 'web_search', type: 'web_search_v0' }],
      });
      if (response.headers.get('cf-mitigated') === 'challenge') {
        // A challenge mid-session: Cloudflare's page takes the whole tab, as a reload would.
        const html = await response.text();
        document.open();
        document.write(html);
        document.close();
        return;
      }
      if (response.status === 401 || response.status === 403) {
        location.assign('/login?returnTo=' + encodeURIComponent('/chat/' + conversationId));
        return;
      }
      if (response.status === 429) {
        // The reset time: in a header, and in `error.message`, itself a JSON string.
        let resetsAt = Number(response.headers.get('anthropic-ratelimit-unified-reset')) || 0;
        try {
          const body = await response.json();
          const limit = parseJson((body && body.error && body.error.message) || '', null);
          if (limit && limit.resetsAt) resetsAt = limit.resetsAt;
        } catch (_) {
          // keep the header's reset time
        }
        showLimitBanner(resetsAt || Math.floor(Date.now() / 1000) + 5 * 3600);
        outcome = 'limited';
      } else if (!response.ok) {
        state.turn = assistantTurn();
        messages.appendChild(state.turn.turn);
        state.error = response.status === 413 ? LENGTH_LIMIT : INTERRUPTED;
        outcome = 'failed';
      } else {
        await readEvents(response, (payload) => {
          apply(payload, state);
        });
        if (state.declined) {
          // The words before the refusal are taken back; the refusal shows in their place.
          state.text = '';
          state.error = DECLINED;
          if (state.reveal) clearInterval(state.reveal);
          state.reveal = null;
          if (state.turn) answerBlock(state.turn).innerHTML = '';
        }
        if (state.error || !state.complete) outcome = 'failed';
      }
    } catch (error) {
      outcome = error && error.name === 'AbortError' ? 'stopped' : 'failed';
    }
    if (state.turn) {
      if (TESTIDS) {
        // The stream is over and the stop control with it; the last words still render.
        clearStopButton();
        await revealed(state);
      } else {
        // The site's own completion signal: the message container stops streaming.
        state.turn.streaming.setAttribute('data-is-streaming', 'false');
      }
      if (state.thinking) updateThinking(state.thinking, true);
      if (outcome === 'failed') {
        showMessageError(state.turn, state.error || INTERRUPTED);
      } else {
        state.turn.turn.appendChild(actionBar(state));
        if (state.cutShort) showMaxLengthNotice();
        parentUuid = uuid();
        addRecent(conversationId, text);
      }
    }
    active = null;
    // Last: the send button coming back, so everything else is in place when it shows.
    showSendButton();
    if (state.late.length) {
      await sleep(LATE_SOURCES_MS);
      state.late.forEach((deliver) => deliver());
    }
  }

  showSendButton();
})();
