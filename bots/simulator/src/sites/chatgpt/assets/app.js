// aap-simulator chat page. Plain DOM code standing in for chatgpt.com's React app: it keeps the
// selectors and the timing shape (thinking, searching, streaming with a pause, then the action
// bar) that browser automation sees on the real site. See the comment at the top of the page for
// sources. `data-ui="redesign"` on <html> switches every test id and class that a redesign
// would rename (the names in UI below).
(() => {
  'use strict';

  const { escapeHtml, uuid, readEvents, sendOnEnter, postForEvents } = window.aapSim;

  const EMPTY_COMPOSER =
    '<p data-placeholder="Ask anything" class="placeholder"><br class="ProseMirror-trailingBreak"></p>';
  const GENERIC_ERROR =
    'Something went wrong while generating the response. If this issue persists please contact us through our help center at help.openai.com.';
  const PART_PATH = '/message/content/parts/0';
  const CANDIDATE_PATH = /^\/paragen\/(\d+)\/content\/parts\/0$/;
  const CHALLENGE_PARAM = '__cf_chl_rt_tk';
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


  // Test ids, classes and shapes of each page variant (`data-ui` on <html>). `null`: that
  // variant has no such test id. Today's markup ("classic", the variant "current") first.
  const CLASSIC = {
    endpoint: '/backend-api/conversation',
    submitId: 'composer-submit-button',
    sendTestid: 'send-button',
    stopTestid: 'stop-button',
    stopLabel: 'Stop answering',
    turnTag: 'article',
    turnTestid: 'conversation-turn-',
    turnClass: 'text-token-text-primary w-full',
    placeholderIds: false,
    markdownClass: 'markdown prose dark:prose-invert w-full break-words light markdown-new-styling',
    errorClass: 'text-token-text-error border-token-surface-error/15 rounded-3xl border px-4 py-3 text-sm',
    copyTestid: 'copy-turn-action-button',
    goodTestid: 'good-response-turn-action-button',
    badTestid: 'bad-response-turn-action-button',
    barGroup: true,
    pillOnLink: false,
    pillHref: 'utm',
    sourcesButton: 'labelled',
    sourcesLabel: 'Sources',
    panel: 'aside',
    panelHref: 'utm',
    titleClass: 'source-title',
    domainClass: 'source-domain',
    thinkingTestid: 'thinking-status',
    thinkingClass: 'thinking-status flex items-center gap-2',
    thinkingLabelClass: 'loading-shimmer-pure-text',
    answerNowTestid: 'answer-now-button',
    recapTestid: 'reasoning-recap-button',
    recapClass: 'reasoning-recap',
    searchTestid: 'search-status',
    searchClass: 'search-status',
    comparisonTestid: 'paragen-comparison',
    comparisonClass: 'paragen',
    candidateTestid: 'paragen-response-',
    candidateClass: 'paragen-response',
    preferTestid: 'paragen-prefer-response-button',
    preferClass: 'prefer-button btn-secondary',
  };
  const VARIANTS = {
    classic: CLASSIC,
    redesign: Object.assign({}, CLASSIC, {
      submitId: 'composer-submit',
      sendTestid: 'composer-send-button',
      stopTestid: 'composer-stop-button',
      turnTestid: 'chat-turn-',
      markdownClass: 'prose response-content w-full break-words',
      errorClass: 'error-banner rounded-2xl border px-4 py-3 text-sm',
      copyTestid: 'copy-button',
      goodTestid: 'thumbs-up-button',
      badTestid: 'thumbs-down-button',
      pillOnLink: true,
      sourcesLabel: 'Show sources',
      panel: 'section',
      titleClass: 'line-clamp-2 text-sm',
      domainClass: 'text-xs text-token-text-secondary',
      thinkingTestid: null,
      thinkingClass: 'reasoning-status flex items-center gap-2',
      answerNowTestid: null,
      recapTestid: null,
      searchTestid: null,
      searchClass: 'web-search-status',
      comparisonTestid: null,
      comparisonClass: 'response-comparison',
      candidateTestid: null,
      candidateClass: 'comparison-candidate',
      preferTestid: null,
    }),
    // The 2026 thread flyout (idx:61241046488, idx:66661304277, idx:54293464671): the action bar
    // is hover-revealed without a role or label, the Sources panel is
    // section[data-testid=screen-threadFlyOut] in div[data-testid=stage-thread-flyout], no
    // dialog role, no "Sources" label, titles in div.font-semibold, and the "More" list shows
    // two entries until its "N more" button is clicked. Links carry the utm tag in the fragment.
    'thread-flyout': Object.assign({}, CLASSIC, {
      endpoint: '/backend-api/f/conversation',
      barGroup: false,
      panel: 'flyout',
      panelHref: 'fragment',
    }),
    // The 2026 test-id drift (CloakGPT idx:59136628605, oracle, 10x-chat) on the older Sources
    // dialog (be-visible v1-legacy): section turns with class agent-turn, composer-stop-button
    // labelled "Stop streaming", request-placeholder ids and aria-busy while streaming, a thinking
    // line without test id, a Sources button known only by its text opening a role=dialog
    // without a label, and chatgpt.com/link?url= redirects for every source link.
    'section-turn': Object.assign({}, CLASSIC, {
      endpoint: '/backend-api/f/conversation',
      stopTestid: 'composer-stop-button',
      stopLabel: 'Stop streaming',
      turnTag: 'section',
      turnClass: 'agent-turn text-token-text-primary w-full',
      placeholderIds: true,
      pillHref: 'redirect',
      sourcesButton: 'text',
      panel: 'dialog',
      panelHref: 'redirect',
      titleClass: 'line-clamp-2 font-semibold',
      domainClass: 'line-clamp-1',
      thinkingTestid: null,
      thinkingClass: 'flex items-center gap-2',
      thinkingLabelClass: 'loading-shimmer',
      answerNowTestid: null,
      recapTestid: null,
      searchTestid: null,
      searchClass: 'text-token-text-secondary',
    }),
  };
  const UI = VARIANTS[document.documentElement.getAttribute('data-ui')] || CLASSIC;
  // `config.late_sources`: the Sources button shows up this long after the answer finished.
  const LATE_SOURCES = document.documentElement.getAttribute('data-late-sources') === 'true';
  const LATE_SOURCES_MS = 1500;

  // A source link as this variant writes it: the utm tag in the query (as the stream sends it),
  // in the fragment, or behind chatgpt.com's redirect.
  function sourceHref(url, form) {
    if (form === 'redirect') return 'https://chatgpt.com/link?url=' + encodeURIComponent(url);
    if (form === 'fragment') {
      const bare = url.replace(/[?&]utm_source=chatgpt\.com$/, '');
      return bare + '#utm_source=chatgpt.com';
    }
    return url;
  }

  const composer = document.querySelector('.ProseMirror[contenteditable="true"]');
  const form = composer.closest('form');
  // A temporary chat says so above the thread, with the button that turns it off (its label as
  // a ChatGPT driver confirmed live, 2026-07; the markup is ours).
  const temporaryChat = new URLSearchParams(location.search).get('temporary-chat') === 'true';
  if (temporaryChat) {
    const header = document.getElementById('page-header');
    const badge = document.createElement('span');
    badge.className = 'temporary-chat-badge';
    badge.textContent = 'Temporary Chat';
    const off = document.createElement('button');
    off.type = 'button';
    off.className = 'ghost';
    off.setAttribute('aria-label', 'Turn off temporary chat');
    off.textContent = '\u00d7';
    off.addEventListener('click', () => location.assign('/'));
    if (header) header.append(badge, off);
  }
  const thread = document.getElementById('thread');
  const conversation = document.getElementById('conversation');
  const historyList = document.getElementById('history');
  const panelRoot = document.getElementById('sources-panel-root');
  if (UI === VARIANTS['section-turn']) {
    composer.setAttribute('data-testid', 'composer-input');
    // A control whose label says "stop" that has nothing to do with the answer: a bot that
    // matches any "stop" button would wait forever (oracle, 2026-07-11).
    const speech = form.querySelector('[data-testid="composer-speech-button"]');
    if (speech) speech.setAttribute('aria-label', 'Stop dictation');
  }

  let turns = 0;
  let active = null; // the answer being streamed: { controller }
  let pendingChoice = false; // an A/B prompt waits for "I prefer this response"
  let conversationId = null;
  let parentId = uuid();

  // An element with the variant's test id (when it has one) and classes.
  function make(tagName, testid, className) {
    const el = document.createElement(tagName);
    if (testid) el.setAttribute('data-testid', testid);
    if (className) el.className = className;
    return el;
  }

  function post(path, body) {
    return fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body || {}),
    }).catch(() => {});
  }

  // ---- composer -----------------------------------------------------------------------------

  function composerText() {
    return composer.innerText.replace(/\u00a0/g, ' ').trim();
  }

  function submitButton() {
    return document.getElementById(UI.submitId);
  }

  function syncComposer() {
    const empty = composerText() === '';
    if (empty && !composer.querySelector('p')) composer.innerHTML = EMPTY_COMPOSER;
    composer.querySelectorAll('p').forEach((p, i) => {
      p.classList.toggle('placeholder', empty && i === 0);
    });
    const button = submitButton();
    if (button && button.dataset.testid === UI.sendTestid) button.disabled = empty;
  }

  // The send and stop buttons are distinct nodes that replace each other in the same slot, as
  // React renders them: a reference to the stop button goes stale once the answer is done.
  function replaceSubmitButton(testid, type, label, icon) {
    const button = document.createElement('button');
    button.id = UI.submitId;
    button.type = type;
    button.className = 'composer-submit-btn';
    button.setAttribute('data-testid', testid);
    button.setAttribute('aria-label', label);
    button.innerHTML = icon;
    submitButton().replaceWith(button);
    return button;
  }

  function showSendButton() {
    replaceSubmitButton(UI.sendTestid, 'submit', 'Send prompt', ICON_SEND);
    syncComposer();
  }

  function showStopButton() {
    replaceSubmitButton(UI.stopTestid, 'button', UI.stopLabel, ICON_STOP);
  }

  composer.addEventListener('input', syncComposer);
  sendOnEnter(composer, submit);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  form.addEventListener('click', (event) => {
    const button = event.target.closest('[data-testid="' + UI.stopTestid + '"]');
    if (button && active) {
      event.preventDefault();
      active.controller.abort();
    }
  });

  function submit() {
    // The A/B chooser blocks the chat until one response is picked.
    if (active || pendingChoice) return;
    const text = composerText();
    if (!text) return;
    composer.innerHTML = EMPTY_COMPOSER;
    syncComposer();
    ask(text);
  }

  // ---- turns --------------------------------------------------------------------------------

  function messageHtml(role, id) {
    // While nothing has streamed, the 2026 page gives the message a placeholder id and marks it
    // busy (CloakGPT idx:59136628605).
    const pending = role === 'assistant' && UI.placeholderIds;
    const shownId = pending ? 'request-placeholder-' + id : id;
    return (
      '<div data-message-author-role="' + role + '" data-message-id="' + escapeHtml(shownId) + '" dir="auto"' +
      (pending ? ' aria-busy="true"' : '') +
      ' class="min-h-8 text-message relative flex w-full flex-col gap-2 text-start break-words whitespace-normal">' +
      '<div class="flex w-full flex-col gap-1 empty:hidden"></div>' +
      '</div>'
    );
  }

  function turnShell(n, role, id) {
    const article = document.createElement(UI.turnTag);
    article.className = UI.turnClass;
    article.tabIndex = -1;
    article.dir = 'auto';
    article.setAttribute('data-testid', UI.turnTestid + n);
    article.setAttribute('data-scroll-anchor', role === 'assistant' ? 'true' : 'false');
    article.setAttribute('data-turn', role);
    article.setAttribute('data-turn-id', id);
    const heading = role === 'user' ? '<h5 class="sr-only">You said:</h5>' : '<h6 class="sr-only">ChatGPT said:</h6>';
    article.innerHTML =
      heading +
      '<div class="text-base my-auto mx-auto"><div class="mx-auto flex flex-1 text-base">' +
      '<div class="group/conversation-turn relative flex w-full min-w-0 flex-col' + (role === 'assistant' ? ' agent-turn' : '') + '">' +
      '<div class="turn-column flex max-w-full flex-col grow">' +
      (role === 'assistant' ? '<div class="turn-status empty:hidden"></div>' : '') +
      messageHtml(role, id) +
      '</div><div class="turn-actions-slot"></div></div></div></div>';
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

  // What one streamed answer message holds and where it renders.
  function target(message) {
    const body = message.querySelector(':scope > div');
    body.innerHTML = '<div class="' + UI.markdownClass + ' result-thinking streaming-animation"></div>';
    return {
      message,
      body,
      markdown: body.firstElementChild,
      text: '',
      refs: {},
      citations: [],
      sources: [],
      products: null,
      prefer: null,
    };
  }

  function assistantTurn(n, id) {
    const article = turnShell(n, 'assistant', id);
    const message = article.querySelector('[data-message-author-role]');
    return {
      article,
      column: article.querySelector('.turn-column'),
      status: article.querySelector('.turn-status'),
      main: target(message),
    };
  }

  function showError(turn, state, message, keepPartial) {
    const main = state.main;
    const inComparison = !!state.comparison;
    if (!inComparison && (!keepPartial || !main.markdown.textContent.trim())) main.markdown.remove();
    const error = make('div', null, UI.errorClass);
    error.setAttribute('role', 'alert');
    error.textContent = message;
    (inComparison ? turn.column : main.body).appendChild(error);
  }

  // ---- thinking and search status -----------------------------------------------------------

  function showThinking(turn, state) {
    if (state.thinkingBox) return;
    const box = make('div', UI.thinkingTestid, UI.thinkingClass);
    box.setAttribute('role', 'status');
    box.setAttribute('aria-live', 'polite');
    box.innerHTML = '<span class="' + UI.thinkingLabelClass + '">Thinking</span>';
    // Trades the reasoning for a quick answer: the server records every click.
    const answerNow = make('button', UI.answerNowTestid, 'answer-now btn-secondary');
    answerNow.type = 'button';
    answerNow.setAttribute('aria-label', 'Answer now');
    answerNow.textContent = 'Answer now';
    answerNow.addEventListener('click', () => {
      answerNow.disabled = true;
      answerNow.textContent = 'Answering now…';
      post('/backend-api/conversation/' + encodeURIComponent(conversationId || 'new') + '/answer_now');
    });
    box.appendChild(answerNow);
    turn.status.appendChild(box);
    state.thinkingBox = box;
  }

  function endThinking(turn, state, text) {
    const recap = make('button', UI.recapTestid, UI.recapClass);
    recap.type = 'button';
    recap.setAttribute('aria-expanded', 'false');
    recap.textContent = text || 'Thought for a few seconds';
    if (state.thinkingBox) state.thinkingBox.replaceWith(recap);
    else turn.status.prepend(recap);
    state.thinkingBox = null;
  }

  function showSearching(turn, state) {
    if (state.searchBox) return;
    const box = make('div', UI.searchTestid, UI.searchClass);
    box.setAttribute('role', 'status');
    box.setAttribute('aria-live', 'polite');
    box.innerHTML = '<span class="' + UI.thinkingLabelClass + '">Searching the web</span>';
    turn.status.appendChild(box);
    state.searchBox = box;
  }

  function showSearched(turn, state, count) {
    showSearching(turn, state);
    state.searchBox.innerHTML = '<span>Searched ' + count + ' site' + (count === 1 ? '' : 's') + '</span>';
  }

  // ---- canvas -------------------------------------------------------------------------------

  // The tool's reply to a canvas call: a card above the message, `div#textdoc-message-<id>` with
  // the canvas's name and its text rendered (the markup userscripts read: a title span
  // `span.min-w-0.truncate`, a `.ProseMirror` body); an update (Python patterns, read here with
  // the dot matching new lines) re-renders it.
  function canvasReply(turn, state, name, canvas, call) {
    let args = {};
    try {
      args = JSON.parse((call && call.text) || '{}');
    } catch (_) {
      return;
    }
    state.canvases = state.canvases || {};
    if (name === 'canmore.create_textdoc') {
      const card = make('div', null, 'textdoc-card rounded-2xl border');
      card.id = 'textdoc-message-' + canvas.textdoc_id;
      card.innerHTML =
        '<div class="flex items-center gap-2"><span class="min-w-0 truncate"></span></div>' +
        '<div class="textdoc-preview"><div class="ProseMirror" contenteditable="false"></div></div>';
      card.querySelector('span.min-w-0').textContent = args.name || canvas.title || 'Canvas';
      turn.column.insertBefore(card, state.main.message);
      state.canvases[canvas.textdoc_id] = { card, text: args.content || '' };
    } else {
      const known = state.canvases[canvas.textdoc_id];
      if (!known) return;
      for (const update of args.updates || []) {
        const pattern = new RegExp(update.pattern, update.multiple ? 'gs' : 's');
        known.text = known.text.replace(pattern, () => update.replacement);
      }
    }
    const shown = state.canvases[canvas.textdoc_id];
    shown.card.querySelector('.ProseMirror').innerHTML = renderMarkdown(shown.text, {});
  }

  // ---- A/B comparison -----------------------------------------------------------------------

  function comparison(turn, state) {
    if (state.comparison) return state.comparison;
    const box = make('div', UI.comparisonTestid, UI.comparisonClass);
    box.innerHTML =
      '<div class="comparison-header"><p class="muted">You\u2019re giving feedback on a new version of ChatGPT.</p>' +
      '<p class="comparison-question">Which response do you prefer? Responses may take a moment to load.</p></div>' +
      '<div class="comparison-columns"></div>';
    // The single answer slot gives way to the two candidates.
    state.main.message.replaceWith(box);
    state.comparison = box;
    return box;
  }

  function candidate(turn, state, index, id) {
    if (state.candidates[index]) return state.candidates[index];
    const box = comparison(turn, state);
    const column = make('div', UI.candidateTestid ? UI.candidateTestid + (index + 1) : null, UI.candidateClass);
    column.innerHTML =
      '<div class="candidate-label muted">ChatGPT</div><div class="candidate-title">Response ' + (index + 1) + '</div>' +
      messageHtml('assistant', id);
    const entry = target(column.querySelector('[data-message-author-role]'));
    const prefer = make('button', UI.preferTestid, UI.preferClass);
    prefer.type = 'button';
    prefer.disabled = true;
    prefer.setAttribute('aria-label', 'I prefer this response');
    prefer.textContent = 'I prefer this response';
    prefer.addEventListener('click', () => choose(turn, state, index));
    column.appendChild(prefer);
    entry.prefer = prefer;
    box.querySelector('.comparison-columns').appendChild(column);
    state.candidates[index] = entry;
    return entry;
  }

  function choose(turn, state, index) {
    const chosen = state.candidates[index];
    if (!pendingChoice || !chosen || !state.comparison) return;
    post('/backend-api/conversation/' + encodeURIComponent(conversationId || 'new') + '/paragen_feedback', {
      preferred: index + 1,
    });
    state.comparison.replaceWith(chosen.message);
    state.comparison = null;
    state.main = chosen;
    pendingChoice = false;
    turn.article.querySelector('.turn-actions-slot').appendChild(actionBar(chosen));
    parentId = chosen.message.getAttribute('data-message-id') || parentId;
  }

  // ---- markdown -----------------------------------------------------------------------------

  function pill(ref) {
    const item = ref.items && ref.items[0];
    if (!item) return '';
    const href = escapeHtml(sourceHref(item.url, UI.pillHref));
    const name = '<span class="max-w-[15ch] grow truncate overflow-hidden text-center">' + escapeHtml(item.attribution) + '</span>';
    if (UI.pillOnLink) {
      return (
        '<span class="citation-wrapper ms-1 inline-flex"><a data-testid="webpage-citation-pill" class="citation-pill" href="' +
        href + '" target="_blank" rel="noopener">' + name + '</a></span>'
      );
    }
    return (
      '<span class="" data-state="closed"><span class="ms-1 inline-flex max-w-full items-center relative top-[-0.094rem] animate-[show_150ms_ease-in]" data-testid="webpage-citation-pill">' +
      '<a href="' + href + '" target="_blank" rel="noopener" alt="' + href + '" class="flex h-4.5 overflow-hidden rounded-xl px-2 text-[9px] font-medium">' +
      name + '</a></span></span>'
    );
  }

  function inline(text, refs) {
    return escapeHtml(text)
      .replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>')
      .replace(/\ue200cite\ue202[^\ue201]*\ue201/g, (marker) => (refs[marker] ? pill(refs[marker]) : ''))
      .replace(/\ue200(products|product|product_entity)\ue202[^\ue201]*\ue201/g, '');
  }

  // chatgpt.com's renderer: numbered lists too, each list item's text in a <p>, and a citation
  // marker still streaming in is not shown half-way.
  const MARKDOWN = { ordered: true, hideOpenCitation: true, item: (html) => '<li><p>' + html + '</p></li>' };

  function renderMarkdown(source, refs) {
    return window.aapSim.renderMarkdown(source, (text) => inline(text, refs), MARKDOWN);
  }

  function copyText(source, refs) {
    return source
      .replace(/\s*\ue200(products|product|product_entity)\ue202[^\ue201]*\ue201/g, '')
      .replace(/\ue200cite\ue202[^\ue201]*\ue201/g, (marker) => {
        const item = refs[marker] && refs[marker].items[0];
        return item ? '([' + item.attribution + '](' + item.url + '))' : '';
      })
      .trim();
  }

  // ---- action bar and sources panel ---------------------------------------------------------

  function actionBar(entry) {
    const bar = document.createElement('div');
    bar.className = 'z-0 flex min-h-[46px] justify-start';
    const group = document.createElement('div');
    group.className = 'turn-actions flex flex-wrap items-center';
    if (UI.barGroup) {
      group.setAttribute('role', 'group');
      group.setAttribute('aria-label', 'Response actions');
    } else {
      // Hover-revealed, without a role or a label (idx:66661304277).
      group.className += ' opacity-0 group-hover/turn-messages:opacity-100';
    }
    group.tabIndex = -1;
    group.innerHTML =
      '<button type="button" data-testid="' + UI.copyTestid + '" aria-label="Copy" data-state="closed">' + ICON_COPY + '</button>' +
      '<button type="button" data-testid="' + UI.goodTestid + '" aria-label="Good response" aria-pressed="false">' + ICON_UP + '</button>' +
      '<button type="button" data-testid="' + UI.badTestid + '" aria-label="Bad response" aria-pressed="false">' + ICON_DOWN + '</button>';
    group.querySelector('[aria-label="Copy"]').addEventListener('click', () => {
      const text = copyText(entry.text, entry.refs);
      if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    });
    if (allSources(entry).length) {
      // Late sources: the button comes after the answer has finished and its bar shows.
      if (LATE_SOURCES) setTimeout(() => group.appendChild(sourcesButton(entry)), LATE_SOURCES_MS);
      else group.appendChild(sourcesButton(entry));
    }
    bar.appendChild(group);
    return bar;
  }

  function sourcesButton(entry) {
    const all = allSources(entry);
    const sources = document.createElement('button');
    sources.type = 'button';
    const favicons = all
      .slice(0, 3)
      .map((c, i) => '<span class="favicon icon-sm rounded-full favicon-' + i + '" aria-hidden="true" title="' + escapeHtml(c.attribution) + '"></span>')
      .join('');
    if (UI.sourcesButton === 'text') {
      // Known only by its text (be-visible: button filtered by /sources/i).
      sources.className = 'flex items-center gap-1';
      sources.innerHTML = favicons + '<span>Sources</span>';
    } else {
      sources.className = 'group/footnote bg-token-bg-primary';
      sources.setAttribute('aria-label', UI.sourcesLabel);
      sources.innerHTML = '<div class="favicons">' + favicons + '</div><div>Sources</div>';
    }
    sources.addEventListener('click', () => openSources(entry));
    return sources;
  }

  // Cited sources first (each once, in the order the answer cites them), then the ones the
  // search read without citing them.
  function allSources(entry) {
    const seen = new Set();
    const cited = [];
    for (const c of entry.citations) {
      if (!seen.has(c.url)) {
        seen.add(c.url);
        cited.push(c);
      }
    }
    const more = entry.sources.filter((s) => !seen.has(s.url));
    return cited.concat(more).map((s, i) => Object.assign({ cited: i < cited.length }, s));
  }

  function openSources(entry) {
    const all = allSources(entry);
    const cited = all.filter((c) => c.cited);
    const more = all.filter((c) => !c.cited);
    panelRoot.innerHTML = '';
    if (UI.panel === 'flyout') return openFlyout(cited, more);
    if (UI.panel === 'dialog') return openDialog(all);
    const item = (c) =>
      '<li><a href="' + escapeHtml(sourceHref(c.url, UI.panelHref)) + '" target="_blank" rel="noopener"><div class="' + UI.domainClass + '">' +
      escapeHtml(c.attribution) + '</div><div class="' + UI.titleClass + '">' + escapeHtml(c.title) + '</div></a></li>';
    const section = (title, list) =>
      list.length ? '<div class="sources-section"><h3>' + title + '</h3><ul>' + list.map(item).join('') + '</ul></div>' : '';
    const panel = make(UI.panel, null, 'sources-panel');
    panel.setAttribute('role', 'dialog');
    panel.setAttribute('aria-label', 'Sources');
    panel.innerHTML =
      '<header><h2>Sources</h2><button type="button" class="ghost round" aria-label="Close">×</button></header>' +
      section('Citations', cited) +
      section('More', more);
    panelRoot.appendChild(panel);
    panel.querySelector('button[aria-label="Close"]').addEventListener('click', () => {
      panelRoot.innerHTML = '';
    });
  }

  // The right-hand thread flyout: no dialog role, no "Sources" label; "More" shows two entries
  // and an "N more" button for the rest.
  function openFlyout(cited, more) {
    const item = (c) =>
      '<a href="' + escapeHtml(sourceHref(c.url, UI.panelHref)) + '" target="_blank" rel="noopener" class="flex flex-col gap-0.5 rounded-xl p-2">' +
      '<div class="text-xs">' + escapeHtml(c.attribution) + '</div>' +
      '<div class="font-semibold line-clamp-2">' + escapeHtml(c.title) + '</div>' +
      '<div class="text-token-text-secondary line-clamp-2">' + escapeHtml(c.snippet || c.attribution + ' \u2014 ' + c.title) + '</div></a>';
    const shell = document.createElement('div');
    shell.setAttribute('data-stage-thread-flyout', '');
    shell.setAttribute('data-testid', 'stage-thread-flyout');
    shell.className = 'relative z-1 shrink-0 overflow-x-hidden sources-flyout';
    shell.style.width = '400px';
    const shown = more.slice(0, 2);
    const hidden = more.slice(2);
    shell.innerHTML =
      '<div class="absolute h-full" style="width:400px"><section data-testid="screen-threadFlyOut" class="flex-1 border-s">' +
      '<div class="flex items-center justify-between"><h2>Sources</h2>' +
      '<button type="button" data-testid="close-button" aria-label="Close">×</button></div>' +
      (cited.length ? '<div><div class="text-sm text-token-text-secondary">Citations</div>' + cited.map(item).join('') + '</div>' : '') +
      (more.length
        ? '<div class="more-list"><div class="text-sm text-token-text-secondary">More</div>' + shown.map(item).join('') +
          (hidden.length ? '<button type="button" class="btn-secondary">' + hidden.length + ' more</button>' : '') + '</div>'
        : '') +
      '</section></div>';
    panelRoot.appendChild(shell);
    const expand = shell.querySelector('.more-list > button');
    if (expand) {
      expand.addEventListener('click', () => {
        expand.insertAdjacentHTML('beforebegin', hidden.map(item).join(''));
        expand.remove();
      });
    }
    shell.querySelector('[data-testid="close-button"]').addEventListener('click', () => {
      panelRoot.innerHTML = '';
    });
  }

  // The older Sources dialog: role=dialog without a label, every link behind the redirect.
  function openDialog(all) {
    const dialog = document.createElement('div');
    dialog.setAttribute('role', 'dialog');
    dialog.id = 'radix-:r1f:';
    dialog.setAttribute('data-state', 'open');
    dialog.className = 'sources-panel fixed right-0 top-0 h-full w-[400px]';
    const item = (c) =>
      '<li><a href="' + escapeHtml(sourceHref(c.url, UI.panelHref)) + '" target="_blank" rel="noopener"><div class="' + UI.domainClass + '">' +
      escapeHtml(c.attribution) + '</div><div class="' + UI.titleClass + '">' + escapeHtml(c.title) + '</div></a></li>';
    dialog.innerHTML =
      '<div class="flex justify-between"><h2>Links</h2><button type="button" aria-label="Close">×</button></div>' +
      '<ul>' + all.map(item).join('') + '</ul>';
    panelRoot.appendChild(dialog);
    dialog.querySelector('button[aria-label="Close"]').addEventListener('click', () => {
      panelRoot.innerHTML = '';
    });
  }

  // The product markers of a streamed text (`products` selections, `product`, `product_entity`),
  // as the names the carousel shows.
  function productNames(text) {
    const names = [];
    const re = /\ue200(products|product|product_entity)\ue202([^\ue201]*)\ue201/g;
    let match;
    while ((match = re.exec(text))) {
      try {
        const body = JSON.parse(match[2]);
        if (match[1] === 'products') (body.selections || []).forEach((pick) => names.push(pick[1]));
        else names.push(body[1]);
      } catch (_) {
        // a marker that is not JSON is not shown
      }
    }
    return names;
  }

  // The carousel below the answer's text: a widget (div.not-prose) that is no answer text.
  function renderProducts(entry) {
    const names = productNames(entry.text);
    if (!names.length) return;
    if (!entry.products) {
      entry.products = document.createElement('div');
      entry.products.className = 'not-prose product-carousel my-2 flex gap-2';
      entry.body.appendChild(entry.products);
    }
    entry.products.innerHTML = names
      .map((name) => '<div class="product-card rounded-xl border p-2"><div class="font-semibold">' + escapeHtml(name) + '</div></div>')
      .join('');
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

  function onMessage(value, state, turn) {
    const message = value.message;
    if (value.conversation_id && value.conversation_id !== conversationId) {
      conversationId = value.conversation_id;
      if (location.pathname !== '/c/' + conversationId) history.pushState({}, '', '/c/' + conversationId);
    }
    const meta = message.metadata || {};
    const content = message.content || {};
    const author = (message.author && message.author.role) || '';
    state.current = null;
    const call = state.call;
    state.call = null;
    if (author === 'tool' && meta.canvas) {
      canvasReply(turn, state, message.author.name, meta.canvas, call);
      return;
    }
    if (author === 'tool') {
      showSearching(turn, state);
      return;
    }
    if (message.recipient && message.recipient !== 'all') {
      // A tool call (the canvas's): its arguments stream into the code content.
      state.call = { recipient: message.recipient, text: content.text || '' };
      return;
    }
    if (content.content_type === 'thoughts') {
      if (meta.model_slug) state.main.message.setAttribute('data-message-model-slug', meta.model_slug);
      showThinking(turn, state);
      return;
    }
    if (content.content_type === 'reasoning_recap') {
      endThinking(turn, state, content.content);
      return;
    }
    // An answer message: the single one, or one candidate of an A/B prompt.
    const index = meta.paragen_variant_index;
    const entry = typeof index === 'number' ? candidate(turn, state, index, message.id || uuid()) : state.main;
    state.current = entry;
    if (message.id) entry.message.setAttribute('data-message-id', message.id);
    if (meta.model_slug) entry.message.setAttribute('data-message-model-slug', meta.model_slug);
    addReferences(entry, meta.content_references);
    addResults(entry, meta.search_result_groups, index, turn, state);
  }

  function addReferences(entry, references) {
    for (const ref of references || []) {
      if (ref.matched_text && ref.items) entry.refs[ref.matched_text] = ref;
      if (ref.type === 'grouped_webpages' && ref.items) entry.citations.push(...ref.items);
    }
  }

  function addResults(entry, groups, index, turn, state) {
    for (const group of groups || []) entry.sources.push(...(group.entries || []));
    if (entry.sources.length && (typeof index !== 'number' || index === 0)) showSearched(turn, state, entry.sources.length);
  }

  function append(entry, chunk) {
    entry.text += chunk;
    entry.markdown.classList.remove('result-thinking');
    render(entry);
  }

  function render(entry) {
    entry.markdown.innerHTML = renderMarkdown(entry.text, entry.refs);
    renderProducts(entry);
  }

  // One operation of the delta encoding (v1) on the message being streamed.
  function applyOp(path, op, value, state, turn) {
    if (path === '' && op === 'add' && value && value.message) return onMessage(value, state, turn);
    if (op === 'patch' && Array.isArray(value)) {
      value.forEach((inner) => applyOp(inner.p, inner.o, inner.v, state, turn));
      return;
    }
    const match = CANDIDATE_PATH.exec(path || '');
    if (match && op === 'append' && typeof value === 'string') {
      const entry = state.candidates[Number(match[1])];
      if (entry) append(entry, value);
      return;
    }
    if (state.call && path === '/message/content/text' && op === 'append' && typeof value === 'string') {
      state.call.text += value;
      return;
    }
    const entry = state.current;
    if (!entry) return;
    if (path === PART_PATH && op === 'append' && typeof value === 'string') {
      append(entry, value);
    } else if (path === '/message/metadata/content_references' && op === 'append') {
      addReferences(entry, value);
      render(entry);
    } else if (path === '/message/metadata/search_result_groups' && op === 'append') {
      addResults(entry, value, undefined, turn, state);
    }
  }

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
    if (payload.type === 'conversation_detail_metadata') {
      showModelLimit(payload);
      return;
    }
    if (payload.type) return; // markers, metadata, resume tokens: nothing to show
    const value = payload.v;
    // A batch without p/o: `{"v": [ops]}` (it does not change what later frames inherit).
    if (payload.p === undefined && payload.o === undefined && Array.isArray(value)) {
      applyOp('', 'patch', value, state, turn);
      return;
    }
    if (payload.p !== undefined) state.path = payload.p;
    if (payload.o !== undefined) state.op = payload.o;
    applyOp(state.path, state.op, value, state, turn);
  }

  // The notice of a plan limit used up, above the composer, as pages saved from chatgpt.com show
  // its words ("You've hit the Free plan limit for GPT-4o." / "Responses will use another model
  // until your limit resets after 7:35 AM." / "Get Plus"); its markup is ours (none public). The
  // time is the browser's clock, as the page formats it.
  function showModelLimit(meta) {
    const limits = Array.isArray(meta.model_limits) ? meta.model_limits : [];
    const limit = limits.find((entry) => entry.model_slug === meta.intended_default_model_slug);
    const shown = document.getElementById('model-limit-notice');
    if (!limit) {
      if (shown) shown.remove();
      return;
    }
    const clock = new Date(limit.resets_after).toLocaleTimeString('en-US', { hour: 'numeric', minute: '2-digit' });
    const name = String(limit.model_slug).replace(/^gpt/i, 'GPT');
    const notice = shown || document.createElement('div');
    notice.id = 'model-limit-notice';
    notice.className = 'model-limit-notice text-sm';
    notice.replaceChildren();
    const first = document.createElement('div');
    first.textContent = `You\u2019ve hit the Free plan limit for ${name}.`;
    const second = document.createElement('div');
    second.textContent = `Responses will use another model until your limit resets after ${clock}.`;
    const upgrade = document.createElement('button');
    upgrade.type = 'button';
    upgrade.textContent = 'Get Plus';
    notice.append(first, second, upgrade);
    const bottom = document.getElementById('thread-bottom-container');
    if (!shown && bottom) bottom.insertBefore(notice, bottom.firstChild);
  }

  async function ask(text) {
    // A new conversation's tab takes its title, a few of the prompt's words (ours: chatgpt.com
    // generates one from them).
    if (turns === 0) document.title = text.split(/\s+/).slice(0, 8).join(' ');
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
    const state = {
      main: turn.main,
      candidates: [],
      comparison: null,
      thinkingBox: null,
      searchBox: null,
      current: null,
      path: PART_PATH,
      op: 'append',
      error: null,
      complete: false,
    };
    let outcome = 'answered';
    try {
      const response = await postForEvents(UI.endpoint, controller.signal, {
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
        // A temporary chat (`/?temporary-chat=true`) stays out of history, memory and training.
        history_and_training_disabled: temporaryChat,
      });
      if (response.headers.get('cf-mitigated') === 'challenge') {
        // Cloudflare refused the call: the app reloads, and the edge shows its interstitial.
        location.assign('/?' + CHALLENGE_PARAM + '=' + uuid());
        return;
      }
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
        showError(turn, state, message, false);
        outcome = 'failed';
      } else {
        await readEvents(response, (payload, event) => {
          applyEvent(event, payload, state, turn);
        });
        if (state.error) {
          showError(turn, state, state.error, true);
          outcome = 'failed';
        } else if (!state.complete) {
          showError(turn, state, GENERIC_ERROR, true);
          outcome = 'failed';
        }
      }
    } catch (error) {
      if (error && error.name === 'AbortError') {
        outcome = 'stopped';
      } else {
        showError(turn, state, 'Network connection lost. Attempting to reconnect…', true);
        outcome = 'failed';
      }
    }
    for (const entry of [state.main].concat(state.candidates)) {
      if (entry) {
        entry.markdown.classList.remove('streaming-animation', 'result-thinking');
        entry.message.removeAttribute('aria-busy');
      }
    }
    if (state.thinkingBox) state.thinkingBox.remove();
    if (outcome !== 'failed') {
      if (state.comparison) {
        // Both candidates are in: the chat waits for a choice before it goes on.
        pendingChoice = true;
        state.candidates.forEach((entry) => {
          if (entry) entry.prefer.disabled = false;
        });
      } else {
        turn.article.querySelector('.turn-actions-slot').appendChild(actionBar(state.main));
        parentId = assistantId;
      }
      if (conversationId) addHistory(conversationId, text);
    }
    active = null;
    // Last: the send button coming back is the "answer finished" signal, so everything else is
    // already in place when it shows.
    showSendButton();
  }

  syncComposer();
})();
