// aap-simulator chat page. Plain DOM code standing in for claude.ai's React app: it keeps the
// selectors and the timing shape that browser automation sees on the real site (see the module
// documentation of `sites::claude` for the evidence). Two markup variants: 'current' (today's
// site) and 'redesign' (other class names and test ids, as after a site redesign).
(() => {
  'use strict';

  const { escapeHtml, uuid, readEvents, sendOnEnter, postForEvents } = window.aapSim;
  const SIM = window.__claudeSim || {};
  const REDESIGN = SIM.variant === 'redesign';
  const ORG = SIM.org || '00000000-0000-4000-8000-000000000000';
  const INTERRUPTED =
    'Claude\u2019s response was interrupted. This can be caused by network problems or exceeding the maximum conversation length. Please contact support if the issue persists.';
  const EMPTY_COMPOSER =
    '<p data-placeholder="How can I help you today?" class="is-empty is-editor-empty"><br class="ProseMirror-trailingBreak"></p>';
  const ICON_SEND =
    '<svg width="16" height="16" viewBox="0 0 20 20" aria-hidden="true"><path d="M10 16V4M5 9l5-5 5 5" stroke="currentColor" stroke-width="2" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>';
  const ICON_STOP =
    '<svg width="16" height="16" viewBox="0 0 20 20" aria-hidden="true"><rect x="5" y="5" width="10" height="10" rx="1.5" fill="currentColor"/></svg>';

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

  // ---- composer -----------------------------------------------------------------------------

  function composerText() {
    return composer.innerText.replace(/\u00a0/g, ' ').trim();
  }

  // The send and stop buttons are distinct nodes that replace each other in the same slot, as
  // React renders them: a reference to the stop button goes stale once the answer is done.
  function showSendButton() {
    const attrs = REDESIGN
      ? { type: 'button', class: 'send-button', 'aria-label': 'Send Message', 'data-testid': 'send-button' }
      : { type: 'button', class: 'send-button', 'aria-label': 'Send message' };
    const button = el('button', attrs, ICON_SEND);
    button.addEventListener('click', submit);
    submitSlot.replaceChildren(button);
    syncComposer();
  }

  function showStopButton() {
    const attrs = REDESIGN
      ? { type: 'button', class: 'stop-button', 'aria-label': 'Stop Response', 'data-testid': 'stop-button' }
      : { type: 'button', class: 'stop-button', 'aria-label': 'Stop response' };
    const button = el('button', attrs, ICON_STOP);
    button.addEventListener('click', () => {
      if (active) active.controller.abort();
    });
    submitSlot.replaceChildren(button);
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

  function assistantTurn() {
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
    return { turn, streaming, body, markdown: null };
  }

  function markdownBlock(extra) {
    return el('div', {
      class: REDESIGN ? 'progressive-markdown' + (extra || '') : 'grid-cols-1 grid gap-2.5 standard-markdown' + (extra || ''),
    });
  }

  function answerBlock(turn) {
    if (!turn.markdown) {
      turn.markdown = markdownBlock('');
      turn.body.appendChild(turn.markdown);
    }
    return turn.markdown;
  }

  function showMessageError(turn, message) {
    const attrs = REDESIGN
      ? { class: 'message-error', 'data-testid': 'message-error' }
      : { role: 'alert', class: 'message-error' };
    const error = el('div', attrs);
    error.textContent = message;
    turn.turn.appendChild(error);
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

  // ---- thinking -----------------------------------------------------------------------------

  function thinkingBlock(turn) {
    let block;
    if (REDESIGN) {
      block = el('details', { class: 'reasoning-panel', 'data-testid': 'reasoning-block' });
      block.innerHTML = '<summary><span class="thinking-label">Thinking\u2026</span></summary>';
      const content = markdownBlock(' reasoning-content');
      block.appendChild(content);
      turn.body.appendChild(block);
      return { block, label: block.querySelector('.thinking-label'), timer: null, content, text: '', started: Date.now() };
    }
    block = el('div', { class: 'thinking-block rounded-lg border-0.5 border-border-300 transition-all' });
    block.innerHTML =
      '<button type="button" class="thinking-toggle group/row" aria-expanded="false">' +
      '<span role="status" class="thinking-label">Thinking\u2026</span><span class="tabular-nums">0s</span></button>' +
      '<div class="thinking-content overflow-y-auto"></div>';
    const content = markdownBlock('');
    block.querySelector('.thinking-content').appendChild(content);
    const toggle = block.querySelector('button');
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      toggle.setAttribute('aria-expanded', String(open));
      block.classList.toggle('open', open);
    });
    turn.body.appendChild(block);
    return { block, label: block.querySelector('.thinking-label'), timer: block.querySelector('.tabular-nums'), content, text: '', started: Date.now() };
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

  function searchBlock(turn, query) {
    const block = REDESIGN
      ? el('div', { class: 'web-search-block', 'data-testid': 'web-search-block' })
      : el('div', { class: 'tool-use-block' });
    const toggle = REDESIGN
      ? el('button', { type: 'button', class: 'tool-toggle', 'data-testid': 'tool-use-toggle', 'aria-expanded': 'false' })
      : el('button', { type: 'button', class: 'group/status tool-toggle flex items-center', 'aria-expanded': 'false' });
    toggle.innerHTML = '<span class="truncate">Searching the web</span><span class="result-count"></span>';
    const list = el('div', { class: 'search-results', hidden: '' });
    block.appendChild(toggle);
    block.appendChild(list);
    // The results are rendered only once the block is opened, as claude.ai's collapsed tool
    // block does: a bot must open it to read the list.
    const search = { block, toggle, list, query, results: [], rendered: false };
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      toggle.setAttribute('aria-expanded', String(open));
      if (open && !search.rendered) {
        list.innerHTML = search.results.map(resultRow).join('');
        search.rendered = true;
      }
      list.hidden = !open;
    });
    turn.body.appendChild(block);
    return search;
  }

  function resultRow(result) {
    const href = escapeHtml(result.url);
    const domain = escapeHtml((result.metadata && result.metadata.site_domain) || '');
    const title = escapeHtml(result.title);
    if (REDESIGN) {
      return (
        '<a data-testid="search-result" class="source-row" href="' + href + '" target="_blank" rel="noopener noreferrer">' +
        '<span class="favicon" aria-hidden="true"></span><div class="source-title">' + title + '</div>' +
        '<div class="source-host">' + domain + '</div></a>'
      );
    }
    return (
      '<a href="' + href + '" target="_blank" rel="noopener noreferrer" class="search-result">' +
      '<span class="favicon" aria-hidden="true"></span><span class="result-title truncate">' + title + '</span>' +
      '<span class="result-domain">' + domain + '</span></a>'
    );
  }

  function searchDone(search, results) {
    search.results = results;
    search.toggle.querySelector('.truncate').textContent = search.query;
    search.toggle.querySelector('.result-count').textContent = results.length + ' results';
  }

  // ---- markdown -----------------------------------------------------------------------------

  // The short site name claude.ai shows in a citation tag: "en.wikipedia.org" -> "wikipedia".
  function siteName(domain) {
    const parts = String(domain || '').split('.').filter(Boolean);
    return parts.length >= 2 ? parts[parts.length - 2] : parts[0] || 'source';
  }

  function chip(citation) {
    const href = escapeHtml(citation.url);
    if (REDESIGN) {
      return (
        '<sup class="citation"><a data-testid="citation-link" href="' + href + '" target="_blank" rel="noopener noreferrer">' +
        (citation.number || 1) + '</a></sup>'
      );
    }
    const domain = (citation.metadata && citation.metadata.site_domain) || '';
    return (
      '<span class="citation-tag inline-flex" data-state="closed"><a href="' + href + '" target="_blank" rel="noopener noreferrer" ' +
      'class="group/tag relative inline-flex items-center overflow-hidden rounded-full"><span class="truncate">' +
      escapeHtml(siteName(domain)) + '</span></a></span>'
    );
  }

  function inline(text, refs) {
    return escapeHtml(text)
      .replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>')
      .replace(/\ue200cite\ue202([0-9]+)\ue201/g, (_, index) => (refs[index] ? chip(refs[index]) : ''));
  }

  // claude.ai's renderer: numbered lists too, and its classes on every block.
  const MARKDOWN = {
    ordered: true,
    paragraph: (html) => '<p class="whitespace-normal break-words">' + html + '</p>',
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

  // ---- after the answer ---------------------------------------------------------------------

  function actionBar(state) {
    const bar = REDESIGN
      ? el('div', { class: 'message-actions' })
      : el('div', { class: 'message-actions', role: 'group', 'aria-label': 'Message actions' });
    const copy = REDESIGN
      ? el('button', { type: 'button', 'data-testid': 'copy-response', 'aria-label': 'Copy response' }, 'Copy')
      : el('button', { type: 'button', 'data-testid': 'action-bar-copy', 'aria-label': 'Copy' }, 'Copy');
    copy.addEventListener('click', () => {
      const text = state.text.replace(/\ue200cite\ue202[0-9]+\ue201/g, '').trim();
      if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    });
    bar.appendChild(copy);
    bar.appendChild(el('button', { type: 'button', 'aria-label': 'Give positive feedback' }, '\u{1F44D}'));
    bar.appendChild(el('button', { type: 'button', 'aria-label': 'Give negative feedback' }, '\u{1F44E}'));
    bar.appendChild(el('button', { type: 'button', 'data-testid': REDESIGN ? 'retry-response' : 'action-bar-retry', 'aria-label': 'Retry' }, 'Retry'));
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
        state.kind = block.type;
        if (block.type === 'thinking') {
          state.thinking = thinkingBlock(state.turn);
        } else if (block.type === 'tool_use' && block.name === 'web_search') {
          state.search = searchBlock(state.turn, (block.input && block.input.query) || '');
        } else if (block.type === 'tool_result' && block.name === 'web_search' && state.search) {
          searchDone(state.search, block.content || []);
        } else if (block.type === 'text') {
          // The answer's markdown block is there from the start of the text, empty until the
          // first words (and empty for good when the answer has none).
          answerBlock(state.turn);
        }
        return;
      }
      case 'content_block_delta': {
        const delta = payload.delta || {};
        if (delta.type === 'thinking_delta' && state.thinking) {
          state.thinking.text += delta.thinking;
          updateThinking(state.thinking, false);
        } else if (delta.type === 'text_delta') {
          state.text += delta.text;
          answerBlock(state.turn).innerHTML = renderMarkdown(state.text, state.refs);
        } else if (delta.type === 'citation_end_delta' && delta.citation) {
          const index = delta.citation.source_index;
          if (!state.refs[index]) {
            state.refs[index] = Object.assign({ number: Object.keys(state.refs).length + 1 }, delta.citation);
          }
          state.text += '\ue200cite\ue202' + index + '\ue201';
          answerBlock(state.turn).innerHTML = renderMarkdown(state.text, state.refs);
        }
        return;
      }
      case 'content_block_stop':
        if (state.kind === 'thinking' && state.thinking) updateThinking(state.thinking, true);
        state.kind = null;
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
    if (firstMessage) chatTitle.textContent = text.length > 60 ? text.slice(0, 60) + '\u2026' : text;

    const controller = new AbortController();
    active = { controller };
    showStopButton();
    const state = { turn: null, text: '', refs: {}, kind: null, thinking: null, search: null, error: null, complete: false };
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
        let resetsAt = Math.floor(Date.now() / 1000) + 5 * 3600;
        try {
          const body = await response.json();
          if (body && body.error && body.error.resets_at) resetsAt = body.error.resets_at;
        } catch (_) {
          // keep the default reset time
        }
        showLimitBanner(resetsAt);
        outcome = 'limited';
      } else if (!response.ok) {
        state.turn = assistantTurn();
        messages.appendChild(state.turn.turn);
        state.error = INTERRUPTED;
        outcome = 'failed';
      } else {
        await readEvents(response, (payload) => {
          apply(payload, state);
        });
        if (state.error || !state.complete) outcome = 'failed';
      }
    } catch (error) {
      outcome = error && error.name === 'AbortError' ? 'stopped' : 'failed';
    }
    if (state.turn) {
      // The site's own completion signal: the message container stops streaming.
      state.turn.streaming.setAttribute('data-is-streaming', 'false');
      if (state.thinking) updateThinking(state.thinking, true);
      if (outcome === 'failed') {
        showMessageError(state.turn, state.error || INTERRUPTED);
      } else {
        state.turn.turn.appendChild(actionBar(state));
        parentUuid = uuid();
        addRecent(conversationId, text);
      }
    }
    active = null;
    // Last: the send button coming back, so everything else is in place when it shows.
    showSendButton();
  }

  showSendButton();
})();
