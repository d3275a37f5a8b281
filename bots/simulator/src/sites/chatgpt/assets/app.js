// aap-simulator chat page. Plain DOM code standing in for chatgpt.com's React app: it keeps the
// selectors and the timing shape (thinking, streaming with a pause, then the action bar) that
// browser automation sees on the real site. See the comment at the top of the page for sources.
(() => {
  'use strict';

  const EMPTY_COMPOSER =
    '<p data-placeholder="Ask anything" class="placeholder"><br class="ProseMirror-trailingBreak"></p>';
  const GENERIC_ERROR =
    'Something went wrong while generating the response. If this issue persists please contact us through our help center at help.openai.com.';
  const PART_PATH = '/message/content/parts/0';
  const ICON_SEND =
    '<svg width="20" height="20" viewBox="0 0 20 20" aria-hidden="true"><path d="M10 16V4M5 9l5-5 5 5" stroke="currentColor" stroke-width="2" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>';
  const ICON_STOP =
    '<svg width="20" height="20" viewBox="0 0 20 20" aria-hidden="true"><rect x="6" y="6" width="8" height="8" rx="1.5" fill="currentColor"/></svg>';
  const ICON_COPY =
    '<svg width="18" height="18" viewBox="0 0 20 20" aria-hidden="true"><rect x="7" y="7" width="9" height="10" rx="2" stroke="currentColor" stroke-width="1.5" fill="none"/><path d="M4 13V5a2 2 0 0 1 2-2h6" stroke="currentColor" stroke-width="1.5" fill="none"/></svg>';
  const ICON_UP =
    '<svg width="18" height="18" viewBox="0 0 20 20" aria-hidden="true"><path d="M7 9l3-6c1.5 0 2 1 2 2v3h4l-1.5 8H7z" stroke="currentColor" stroke-width="1.5" fill="none"/></svg>';
  const ICON_DOWN =
    '<svg width="18" height="18" viewBox="0 0 20 20" aria-hidden="true"><path d="M13 11l-3 6c-1.5 0-2-1-2-2v-3H4l1.5-8H13z" stroke="currentColor" stroke-width="1.5" fill="none"/></svg>';

  const composer = document.getElementById('prompt-textarea');
  const form = composer.closest('form');
  const thread = document.getElementById('thread');
  const conversation = document.getElementById('conversation');
  const historyList = document.getElementById('history');
  const panelRoot = document.getElementById('sources-panel-root');

  let turns = 0;
  let active = null; // the answer being streamed: { controller }
  let conversationId = null;
  let parentId = uuid();

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
      const r = (Math.random() * 16) | 0;
      return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16);
    });
  }

  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&#39;');
  }

  // ---- composer -----------------------------------------------------------------------------

  function composerText() {
    return composer.innerText.replace(/\u00a0/g, ' ').trim();
  }

  function submitButton() {
    return document.getElementById('composer-submit-button');
  }

  function syncComposer() {
    const empty = composerText() === '';
    if (empty && !composer.querySelector('p')) composer.innerHTML = EMPTY_COMPOSER;
    composer.querySelectorAll('p').forEach((p, i) => {
      p.classList.toggle('placeholder', empty && i === 0);
    });
    const button = submitButton();
    if (button && button.dataset.testid === 'send-button') button.disabled = empty;
  }

  // The send and stop buttons are distinct nodes that replace each other in the same slot, as
  // React renders them: a reference to the stop button goes stale once the answer is done.
  function replaceSubmitButton(testid, type, label, icon) {
    const button = document.createElement('button');
    button.id = 'composer-submit-button';
    button.type = type;
    button.className = 'composer-submit-btn';
    button.setAttribute('data-testid', testid);
    button.setAttribute('aria-label', label);
    button.innerHTML = icon;
    submitButton().replaceWith(button);
    return button;
  }

  function showSendButton() {
    replaceSubmitButton('send-button', 'submit', 'Send prompt', ICON_SEND);
    syncComposer();
  }

  function showStopButton() {
    replaceSubmitButton('stop-button', 'button', 'Stop answering', ICON_STOP);
  }

  composer.addEventListener('input', syncComposer);
  composer.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  form.addEventListener('click', (event) => {
    const button = event.target.closest('[data-testid="stop-button"]');
    if (button && active) {
      event.preventDefault();
      active.controller.abort();
    }
  });

  function submit() {
    if (active) return;
    const text = composerText();
    if (!text) return;
    composer.innerHTML = EMPTY_COMPOSER;
    syncComposer();
    ask(text);
  }

  // ---- turns --------------------------------------------------------------------------------

  function turnShell(n, role, id) {
    const article = document.createElement('article');
    article.className = 'text-token-text-primary w-full';
    article.tabIndex = -1;
    article.dir = 'auto';
    article.setAttribute('data-testid', 'conversation-turn-' + n);
    article.setAttribute('data-scroll-anchor', role === 'assistant' ? 'true' : 'false');
    article.setAttribute('data-turn', role);
    article.setAttribute('data-turn-id', id);
    const heading = role === 'user' ? '<h5 class="sr-only">You said:</h5>' : '<h6 class="sr-only">ChatGPT said:</h6>';
    article.innerHTML =
      heading +
      '<div class="text-base my-auto mx-auto"><div class="mx-auto flex flex-1 text-base">' +
      '<div class="group/conversation-turn relative flex w-full min-w-0 flex-col' + (role === 'assistant' ? ' agent-turn' : '') + '">' +
      '<div class="flex max-w-full flex-col grow">' +
      '<div data-message-author-role="' + role + '" data-message-id="' + id + '" dir="auto"' +
      (role === 'assistant' ? ' data-message-model-slug="gpt-5"' : '') +
      ' class="min-h-8 text-message relative flex w-full flex-col gap-2 text-start break-words whitespace-normal">' +
      '<div class="flex w-full flex-col gap-1 empty:hidden"></div>' +
      '</div></div><div class="turn-actions-slot"></div></div></div></div>';
    return article;
  }

  function userTurn(n, id, text) {
    const article = turnShell(n, 'user', id);
    const body = article.querySelector('[data-message-author-role] > div');
    body.innerHTML =
      '<div class="user-message-bubble-color relative rounded-[18px] px-4 py-1.5"><div class="whitespace-pre-wrap"></div></div>';
    body.querySelector('.whitespace-pre-wrap').textContent = text;
    return article;
  }

  function assistantTurn(n, id) {
    const article = turnShell(n, 'assistant', id);
    const body = article.querySelector('[data-message-author-role] > div');
    body.innerHTML =
      '<div class="markdown prose dark:prose-invert w-full break-words light markdown-new-styling result-thinking streaming-animation"></div>';
    return { article, body, markdown: body.querySelector('.markdown') };
  }

  function showError(turn, message, keepPartial) {
    if (!keepPartial || !turn.markdown.textContent.trim()) turn.markdown.remove();
    const error = document.createElement('div');
    error.className = 'text-token-text-error border-token-surface-error/15 rounded-3xl border px-4 py-3 text-sm';
    error.setAttribute('role', 'alert');
    error.textContent = message;
    turn.body.appendChild(error);
  }

  // ---- markdown -----------------------------------------------------------------------------

  function pill(ref) {
    const item = ref.items && ref.items[0];
    if (!item) return '';
    const href = escapeHtml(item.url);
    return (
      '<span class="" data-state="closed"><span class="ms-1 inline-flex max-w-full items-center relative top-[-0.094rem] animate-[show_150ms_ease-in]" data-testid="webpage-citation-pill">' +
      '<a href="' + href + '" target="_blank" rel="noopener" alt="' + href + '" class="flex h-4.5 overflow-hidden rounded-xl px-2 text-[9px] font-medium">' +
      '<span class="max-w-[15ch] grow truncate overflow-hidden text-center">' + escapeHtml(item.attribution) + '</span>' +
      '</a></span></span>'
    );
  }

  function inline(text, refs) {
    return escapeHtml(text)
      .replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>')
      .replace(/\ue200cite\ue202[^\ue201]*\ue201/g, (marker) => (refs[marker] ? pill(refs[marker]) : ''));
  }

  function renderMarkdown(source, refs) {
    // An unfinished citation marker at the tail stays hidden until its end arrives.
    const open = source.lastIndexOf('\ue200');
    if (open > source.lastIndexOf('\ue201')) source = source.slice(0, open);
    let html = '';
    let paragraph = [];
    let list = null;
    const flushParagraph = () => {
      if (paragraph.length) html += '<p>' + inline(paragraph.join(' '), refs) + '</p>';
      paragraph = [];
    };
    const flushList = () => {
      if (list) {
        html += '<' + list.tag + '>' + list.items.map((item) => '<li><p>' + inline(item, refs) + '</p></li>').join('') + '</' + list.tag + '>';
      }
      list = null;
    };
    for (const line of source.split('\n')) {
      const text = line.trim();
      let match;
      if (!text) {
        flushParagraph();
        flushList();
      } else if ((match = /^(#{1,6})\s+(.*)$/.exec(text))) {
        flushParagraph();
        flushList();
        const level = match[1].length;
        html += '<h' + level + '>' + inline(match[2], refs) + '</h' + level + '>';
      } else if ((match = /^(?:[-*]|(\d+)\.)\s+(.*)$/.exec(text))) {
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
    return html;
  }

  function copyText(source, refs) {
    return source
      .replace(/\ue200cite\ue202[^\ue201]*\ue201/g, (marker) => {
        const item = refs[marker] && refs[marker].items[0];
        return item ? '([' + item.attribution + '](' + item.url + '))' : '';
      })
      .trim();
  }

  // ---- action bar and sources panel ---------------------------------------------------------

  function actionBar(state) {
    const bar = document.createElement('div');
    bar.className = 'z-0 flex min-h-[46px] justify-start';
    const group = document.createElement('div');
    group.className = 'turn-actions flex flex-wrap items-center';
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', 'Response actions');
    group.tabIndex = -1;
    group.innerHTML =
      '<button type="button" data-testid="copy-turn-action-button" aria-label="Copy" data-state="closed">' + ICON_COPY + '</button>' +
      '<button type="button" data-testid="good-response-turn-action-button" aria-label="Good response" aria-pressed="false">' + ICON_UP + '</button>' +
      '<button type="button" data-testid="bad-response-turn-action-button" aria-label="Bad response" aria-pressed="false">' + ICON_DOWN + '</button>';
    group.querySelector('[data-testid="copy-turn-action-button"]').addEventListener('click', () => {
      const text = copyText(state.text, state.refs);
      if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    });
    if (state.citations.length) {
      const sources = document.createElement('button');
      sources.type = 'button';
      sources.className = 'group/footnote bg-token-bg-primary';
      sources.setAttribute('aria-label', 'Sources');
      const favicons = state.citations
        .slice(0, 3)
        .map((c, i) => '<span class="favicon icon-sm rounded-full favicon-' + i + '" aria-hidden="true" title="' + escapeHtml(c.attribution) + '"></span>')
        .join('');
      sources.innerHTML = '<div class="favicons">' + favicons + '</div><div>Sources</div>';
      sources.addEventListener('click', () => openSources(state.citations));
      group.appendChild(sources);
    }
    bar.appendChild(group);
    return bar;
  }

  function openSources(citations) {
    panelRoot.innerHTML =
      '<aside class="sources-panel" role="dialog" aria-label="Sources"><header><h2>Citations</h2>' +
      '<button type="button" class="ghost round" aria-label="Close">×</button></header><ul>' +
      citations
        .map(
          (c) =>
            '<li><a href="' + escapeHtml(c.url) + '" target="_blank" rel="noopener"><div class="source-domain">' +
            escapeHtml(c.attribution) + '</div><div class="source-title">' + escapeHtml(c.title) + '</div></a></li>'
        )
        .join('') +
      '</ul></aside>';
    panelRoot.querySelector('button[aria-label="Close"]').addEventListener('click', () => {
      panelRoot.innerHTML = '';
    });
  }

  function addHistory(id, title) {
    if (historyList.querySelector('[data-conversation-id="' + id + '"]')) return;
    const link = document.createElement('a');
    link.className = 'history-item';
    link.href = '/c/' + id;
    link.setAttribute('data-conversation-id', id);
    link.textContent = title.length > 40 ? title.slice(0, 40) + '…' : title;
    historyList.prepend(link);
  }

  // ---- streaming ----------------------------------------------------------------------------

  function applyEvent(event, payload, state, turn) {
    if (event === 'delta_encoding') return;
    if (payload.type === 'error' || payload.error) {
      state.error = payload.message || payload.error || GENERIC_ERROR;
      return;
    }
    if (payload.type === 'message_stream_complete') {
      state.complete = true;
      return;
    }
    const value = payload.v;
    if (value && typeof value === 'object' && value.message) {
      // The opening "add" carries the message header and its content references.
      const refs = (value.message.metadata && value.message.metadata.content_references) || [];
      for (const ref of refs) {
        state.refs[ref.matched_text] = ref;
        if (ref.items) state.citations.push(...ref.items);
      }
      if (value.conversation_id && value.conversation_id !== conversationId) {
        conversationId = value.conversation_id;
        if (location.pathname !== '/c/' + conversationId) history.pushState({}, '', '/c/' + conversationId);
      }
      return;
    }
    if (payload.p !== undefined) state.path = payload.p;
    if (payload.o !== undefined) state.op = payload.o;
    if (typeof value === 'string' && state.op === 'append' && state.path === PART_PATH) {
      state.text += value;
      turn.markdown.classList.remove('result-thinking');
      turn.markdown.innerHTML = renderMarkdown(state.text, state.refs);
    }
  }

  async function readStream(response, state, turn) {
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
        applyEvent(event, payload, state, turn);
      }
    }
  }

  async function ask(text) {
    thread.classList.add('has-messages');
    const userId = uuid();
    conversation.appendChild(userTurn(++turns, userId, text));
    const assistantId = uuid();
    const turn = assistantTurn(++turns, assistantId);
    conversation.appendChild(turn.article);
    turn.article.scrollIntoView({ block: 'end' });

    const controller = new AbortController();
    active = { controller };
    showStopButton();
    const state = { text: '', refs: {}, citations: [], path: PART_PATH, op: 'append', error: null, complete: false };
    let outcome = 'answered';
    try {
      const response = await fetch('/backend-api/conversation', {
        method: 'POST',
        credentials: 'same-origin',
        signal: controller.signal,
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({
          action: 'next',
          messages: [
            {
              id: userId,
              author: { role: 'user' },
              content: { content_type: 'text', parts: [text] },
              metadata: {},
            },
          ],
          conversation_id: conversationId || undefined,
          parent_message_id: parentId,
          model: new URLSearchParams(location.search).get('model') || 'auto',
          timezone_offset_min: new Date().getTimezoneOffset(),
          history_and_training_disabled: false,
        }),
      });
      if (response.status === 401 || response.status === 403) {
        // The session is gone: chatgpt.com sends the browser back to the logged-out page.
        location.assign('/');
        return;
      }
      if (!response.ok) {
        let message = GENERIC_ERROR;
        try {
          const body = await response.json();
          const detail = body && body.detail;
          message = (detail && (detail.message || (typeof detail === 'string' ? detail : null))) || message;
        } catch (_) {
          // keep the generic message
        }
        showError(turn, message, false);
        outcome = 'failed';
      } else {
        await readStream(response, state, turn);
        if (state.error) {
          showError(turn, state.error, true);
          outcome = 'failed';
        } else if (!state.complete) {
          showError(turn, GENERIC_ERROR, true);
          outcome = 'failed';
        }
      }
    } catch (error) {
      if (error && error.name === 'AbortError') {
        outcome = 'stopped';
      } else {
        showError(turn, 'Network connection lost. Attempting to reconnect…', true);
        outcome = 'failed';
      }
    }
    turn.markdown.classList.remove('streaming-animation', 'result-thinking');
    if (outcome !== 'failed') {
      turn.article.querySelector('.turn-actions-slot').appendChild(actionBar(state));
      parentId = assistantId;
      if (conversationId) addHistory(conversationId, text);
    }
    active = null;
    // Last: the send button coming back is the "answer finished" signal, so everything else is
    // already in place when it shows.
    showSendButton();
  }

  syncComposer();
})();
