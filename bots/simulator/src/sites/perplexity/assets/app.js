// aap-simulator: perplexity.ai page script. Plain DOM code standing in for the site's React app.
// It keeps the hooks and the timing shape browser automation sees on the real site: the
// contenteditable #ask-input, a Submit button that turns into a Stop button while answering,
// the answer in .prose with citation chips, the sources list (a Links tab, or a context pane),
// and a list that keeps filling after the answer text has finished. It reads the answer stream
// as the real front end gets it (`event: message` envelopes whose `blocks` are whole blocks or
// RFC-6902 `diff_block` patches). See sites/perplexity/mod.rs for the evidence and the variants.
(() => {
  'use strict';

  const { escapeHtml: esc, readEvents, sendOnEnter, postForEvents } = window.aapSim;
  const VARIANT = document.documentElement.dataset.variant;
  const LATE_SOURCES = document.documentElement.dataset.lateSources === 'true';
  // With late sources, the list shows one more entry this often once the answer is finished.
  const LATE_REVEAL_MS = 150;
  const GENERIC_ERROR = 'Something went wrong. Please try again later.';
  const MODEL_LABELS = { sonar: 'Sonar', turbo: 'Sonar' };
  const ICON_SUBMIT =
    '<svg width="18" height="18" viewBox="0 0 20 20" aria-hidden="true"><path d="M10 16V4M5 9l5-5 5 5" stroke="currentColor" stroke-width="2" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>';
  const ICON_STOP =
    '<svg width="18" height="18" viewBox="0 0 20 20" aria-hidden="true"><rect x="6" y="6" width="8" height="8" rx="1.5" fill="currentColor"/></svg>';
  const ICON_COPY =
    '<svg class="tabler-icon tabler-icon-copy" width="16" height="16" viewBox="0 0 24 24" aria-hidden="true"><rect x="8" y="8" width="12" height="12" rx="2" stroke="currentColor" fill="none"/></svg>';

  // "www.techradar.com" -> "techradar": the name a chip shows.
  function siteName(domain) {
    const parts = String(domain).replace(/^www\./, '').split('.');
    return parts.length > 1 ? parts[parts.length - 2] : parts[0];
  }

  // A chip with no anchor: the source in an attribute, the site's name as its label.
  function spanChip(source) {
    return (
      '<span class="citation inline" data-pplx-citation="" data-pplx-citation-url="' + esc(source.url) +
      '" aria-label="' + esc(siteName(source.domain)) + '"><span class="citation-chip rounded-badge">' +
      '<span class="text-3xs">' + esc(siteName(source.domain)) + '</span></span></span>'
    );
  }

  function ghost(label, text) {
    return { attrs: { type: 'button', 'aria-label': label, class: 'ghost' }, text };
  }

  // The markups: only what differs lives here; everything else is shared.
  const MARKUPS = {
    current: {
      layout: 'tabs',
      submit: { 'data-testid': 'submit-button' },
      stop: { 'data-testid': 'stop-generating-response-button' },
      turn: () => el('div', { class: 'thread-turn pb-md', 'data-testid': 'thread-turn' }),
      tabId: (k, name) => 'radix-:r' + k + ':-' + name,
      sourcesName: 'sources',
      sourcesTab: {},
      sourcesPanel: {},
      sourcesHeader: () => 'Search results',
      steps: { 'data-testid': 'search-steps', class: 'search-steps-2026' },
      prose: (k) => ({
        id: 'markdown-content-' + k,
        class: 'prose text-pretty dark:prose-invert inline leading-normal break-words min-w-0 [word-break:break-word]',
      }),
      error: { 'data-testid': 'answer-error', class: 'answer-error-2026', role: 'alert' },
      footer: { class: 'answer-actions' },
      buttons: () => [ghost('Share', 'Share'), ghost('Rewrite', 'Rewrite'), ghost('Copy', 'Copy')],
      model: { 'data-testid': 'answer-model-label', class: 'model-label' },
      // Chips carry their source in an attribute and have no anchor (see the evidence).
      chip: spanChip,
      sourceItem: (source) =>
        '<div class="source-item"><a data-testid="source-link" class="source-card-2026" href="' + esc(source.url) +
        '" target="_blank" rel="noopener"><div class="source-number">' + source.number + '</div>' +
        '<div data-testid="source-title" class="line-clamp-2 source-title">' + esc(source.title) + '</div>' +
        '<div class="source-domain">' + esc(source.domain) + '</div></a></div>',
    },
    redesign: {
      layout: 'tabs',
      submit: { 'data-testid': 'query-submit' },
      stop: { 'data-testid': 'query-stop' },
      turn: () => el('section', { class: 'thread-turn', 'data-turn': '' }),
      tabId: (k, name) => 'tabs-' + k + '-' + name,
      sourcesName: 'links',
      sourcesTab: { 'data-testid': 'sources-tab' },
      sourcesPanel: { 'data-testid': 'sources-panel' },
      sourcesHeader: () => 'Search results',
      steps: { class: 'search-steps' },
      prose: () => ({ class: 'prose answer-body' }),
      error: { class: 'answer-error', role: 'alert' },
      footer: { class: 'answer-actions' },
      buttons: () => [
        ghost('Share', 'Share'),
        ghost('Rewrite', 'Rewrite'),
        { attrs: { type: 'button', class: 'ghost', 'aria-label': 'Copy answer', 'data-testid': 'copy-answer-button' }, text: 'Copy' },
      ],
      model: { class: 'model-badge' },
      chip: (source) =>
        '<a class="citation" href="' + esc(source.url) + '" target="_blank" rel="noopener" data-citation-number="' +
        source.number + '"><span class="citation-number">[' + source.number + ']</span></a>',
      sourceItem: (source) =>
        '<a class="source-card" href="' + esc(source.url) + '" target="_blank" rel="noopener">' +
        '<span class="source-number">' + source.number + '</span>' +
        '<div class="source-title">' + esc(source.title) + '</div>' +
        '<div class="source-domain">' + esc(source.domain) + '</div></a>',
    },
    // steipete/oracle perplexityDomProvider.ts: no test ids; the footer (Helpful) and a
    // "N sources" button; the sources in a context pane on <body>.
    'final-text-context-pane': {
      layout: 'pane',
      submit: {},
      stop: {},
      turn: () => el('div', { class: 'group/final-text flex flex-col' }),
      steps: { class: 'flex gap-2 text-quiet text-sm' },
      prose: () => ({ class: 'prose text-pretty dark:prose-invert inline leading-normal break-words' }),
      error: { class: 'answer-error-2026', role: 'alert' },
      footer: { class: 'flex items-center justify-between' },
      buttons: () => [ghost('Share', 'Share'), ghost('Copy', 'Copy'), ghost('Helpful', '👍'), ghost('Not helpful', '👎')],
      model: null,
      chip: spanChip,
      sourceItem: (source) =>
        '<a href="' + esc(source.url) + '" target="_blank" rel="noopener" class="block pane-card">' +
        '<div class="text-xs">' + esc(source.domain) + '</div>' +
        '<div class="line-clamp-2">' + esc(source.title) + '</div>' +
        '<div class="line-clamp-3 text-quiet">' + esc(source.title) + ' …</div></a>',
    },
    // The answer-tracking write-up (2026-08-11), pplxport, a tabpanel parser: no anchors at all;
    // the Links panel is named `citations`; list entries carry the URL in an attribute.
    'citations-tab-span-only': {
      layout: 'tabs',
      submit: {},
      stop: {},
      turn: () => el('div', { class: 'pb-md' }),
      tabId: (k, name) => 'radix-:r' + k + ':-' + name,
      sourcesName: 'citations',
      sourcesTab: {},
      sourcesPanel: {},
      sourcesHeader: (turn) => 'Sources for ' + esc(turn.query),
      steps: null,
      prose: (k) => ({ id: 'markdown-content-' + k, class: 'prose text-pretty dark:prose-invert' }),
      error: { class: 'answer-error-2026', role: 'alert' },
      footer: { class: 'flex items-center justify-between' },
      buttons: () => [
        ghost('Share', 'Share'),
        { attrs: { type: 'button', 'aria-label': 'Copy', class: 'ghost' }, html: ICON_COPY },
        ghost('Rewrite', 'Rewrite'),
      ],
      model: null,
      chip: (source) => spanChip(source) + '<span class="citation-nbsp">\u00a0</span>',
      sourceItem: (source) =>
        '<div class="group source-row" data-pplx-citation-url="' + esc(source.url) + '">' +
        '<div class="font-display">' + esc(source.title) + '</div>' +
        '<div class="text-xs source-domain">' + esc(source.domain) + '</div></div>',
    },
  };
  const M = MARKUPS[VARIANT] || MARKUPS.current;

  const composer = document.querySelector('[data-lexical-editor="true"]');
  const slot = document.getElementById('submit-slot');
  const turns = document.getElementById('turns');
  const hero = document.getElementById('home-hero');

  let turnCount = 0;
  let active = null; // { controller } while an answer streams

  function el(tag, attrs) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  function slugify(text) {
    const slug = text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 60);
    return (slug || 'thread') + '-' + Math.random().toString(36).slice(2, 10);
  }

  // ---- composer -------------------------------------------------------------------------------

  function composerText() {
    return composer.innerText.replace(/\u00a0/g, ' ').replace(/\n+$/, '').trim();
  }

  function submitButton() {
    return slot.firstElementChild;
  }

  function syncComposer() {
    const button = submitButton();
    if (button && button.getAttribute('aria-label') === 'Submit') button.disabled = composerText() === '';
  }

  // Submit and Stop are distinct nodes replacing each other, as React renders them.
  function showSubmit() {
    const button = el('button', Object.assign({ type: 'button', 'aria-label': 'Submit', class: 'interactable rounded-full bg-button-bg submit' }, M.submit));
    button.innerHTML = ICON_SUBMIT;
    slot.replaceChildren(button);
    syncComposer();
  }

  function showStop() {
    const button = el('button', Object.assign({ type: 'button', 'aria-label': 'Stop', class: 'interactable rounded-full stop' }, M.stop));
    button.innerHTML = ICON_STOP;
    slot.replaceChildren(button);
  }

  composer.addEventListener('input', syncComposer);
  sendOnEnter(composer, submit);
  slot.addEventListener('click', (event) => {
    const button = event.target.closest('button');
    if (!button) return;
    if (button.getAttribute('aria-label') === 'Stop') {
      if (active) active.controller.abort();
    } else if (!button.disabled) {
      submit();
    }
  });

  function submit() {
    if (active) return;
    const text = composerText();
    if (!text) return;
    composer.innerHTML = '<p><br></p>';
    composer.setAttribute('aria-placeholder', 'Ask a follow-up');
    ask(text);
  }

  // ---- login modal ----------------------------------------------------------------------------

  function showLoginModal() {
    const template = document.getElementById('login-modal-template');
    if (!template || document.querySelector('[role="dialog"][aria-modal="true"]')) return;
    document.body.appendChild(template.content.cloneNode(true));
  }

  // ---- turns ----------------------------------------------------------------------------------

  function makeTurn(text) {
    const k = turnCount++;
    const root = M.turn();
    const query = el('div', { class: 'group/query query' });
    const heading = el('h1', { class: 'query-text' });
    const span = el('span', { 'data-lexical-text': 'true', class: 'select-text' });
    span.textContent = text;
    heading.appendChild(span);
    query.appendChild(heading);
    const copyQuery = el('button', { type: 'button', 'data-testid': 'copy-query-button', 'aria-label': 'Copy Query', class: 'ghost' });
    copyQuery.textContent = '⧉';
    query.appendChild(copyQuery);
    root.appendChild(query);

    const prose = el('div', M.prose(k));
    const turn = {
      k,
      query: text,
      root,
      prose,
      body: root,
      tabs: null,
      answerTab: null,
      answerPanel: null,
      footer: null,
      sourcesTab: null,
      sourcesPanel: null,
      trigger: null,
      pane: null,
      steps: null,
      sources: [], // the web results that are sources, by number
      revealed: 0, // with late sources: how many the list shows
      done: false, // the footer shows
      final: false, // the stream's final frame came
    };
    if (M.layout === 'tabs') {
      const tabs = el('div', { 'data-testid': 'answer-mode-tabs', role: 'tablist', 'aria-orientation': 'horizontal', class: 'tabs' });
      const answerTab = el('button', {
        type: 'button',
        role: 'tab',
        id: M.tabId(k, 'trigger-answer'),
        'aria-controls': M.tabId(k, 'content-answer'),
        'aria-selected': 'true',
        'data-state': 'active',
        class: 'tab',
      });
      answerTab.textContent = 'Answer';
      tabs.appendChild(answerTab);
      root.appendChild(tabs);
      const answerPanel = el('div', {
        role: 'tabpanel',
        id: M.tabId(k, 'content-answer'),
        'aria-labelledby': M.tabId(k, 'trigger-answer'),
        'data-state': 'active',
        class: 'tabpanel',
      });
      root.appendChild(answerPanel);
      Object.assign(turn, { tabs, answerTab, answerPanel, body: answerPanel });
      answerTab.addEventListener('mousedown', () => selectTab(turn, 'answer'));
    }
    turn.body.appendChild(prose);
    turn.footer = el('div', M.footer);
    if (M.layout === 'tabs' && M.footer.class === 'answer-actions') turn.body.appendChild(turn.footer);
    return turn;
  }

  // Radix tabs switch on mousedown, not on click.
  function selectTab(turn, which) {
    const onSources = which === 'sources';
    for (const [tab, selected] of [
      [turn.answerTab, !onSources],
      [turn.sourcesTab, onSources],
    ]) {
      if (!tab) continue;
      tab.setAttribute('aria-selected', String(selected));
      tab.setAttribute('data-state', selected ? 'active' : 'inactive');
    }
    turn.answerPanel.setAttribute('data-state', onSources ? 'inactive' : 'active');
    turn.answerPanel.hidden = onSources;
    if (turn.sourcesPanel) {
      turn.sourcesPanel.setAttribute('data-state', onSources ? 'active' : 'inactive');
      turn.sourcesPanel.hidden = !onSources;
      renderSources(turn);
    }
  }

  // The sources the list shows now: all of them, or with late sources only those revealed.
  function visibleSources(turn) {
    return LATE_SOURCES ? turn.sources.slice(0, turn.revealed) : turn.sources;
  }

  function ensureSourcesTab(turn) {
    if (turn.sourcesTab) return;
    const name = M.sourcesName;
    turn.sourcesTab = el(
      'button',
      Object.assign(
        {
          type: 'button',
          role: 'tab',
          id: M.tabId(turn.k, 'trigger-' + name),
          'aria-controls': M.tabId(turn.k, 'content-' + name),
          'aria-selected': 'false',
          'data-state': 'inactive',
          class: 'tab',
        },
        M.sourcesTab
      )
    );
    turn.sourcesTab.addEventListener('mousedown', () => selectTab(turn, 'sources'));
    turn.tabs.appendChild(turn.sourcesTab);
    turn.sourcesPanel = el(
      'div',
      Object.assign(
        {
          role: 'tabpanel',
          id: M.tabId(turn.k, 'content-' + name),
          'aria-labelledby': M.tabId(turn.k, 'trigger-' + name),
          'data-state': 'inactive',
          class: 'tabpanel sources-panel',
        },
        M.sourcesPanel
      )
    );
    turn.sourcesPanel.hidden = true;
    turn.root.appendChild(turn.sourcesPanel);
  }

  // The "N sources" button of the footer row: it opens the context pane (a plain button, no
  // role, no aria-label).
  function ensureTrigger(turn) {
    if (turn.trigger || !turn.done) return;
    turn.trigger = el('button', { type: 'button', class: 'sources-trigger ghost' });
    turn.trigger.addEventListener('click', () => openPane(turn));
    turn.footer.appendChild(turn.trigger);
  }

  function openPane(turn) {
    if (!turn.pane) {
      turn.pane = el('div', { 'data-context-pane': 'true', class: 'context-pane fixed right-0 top-0 h-full' });
      document.body.appendChild(turn.pane);
    }
    renderSources(turn);
  }

  // The sources list as far as it is known and shown.
  function showSources(turn) {
    const visible = visibleSources(turn);
    // The search steps show once the search found something (above the answer).
    if (M.steps && !turn.steps && turn.sources.length) {
      turn.steps = el('div', M.steps);
      turn.body.insertBefore(turn.steps, turn.prose);
    }
    if (turn.steps) {
      turn.steps.innerHTML =
        '<span class="step">Searching the web</span><span class="step">Reviewed ' + turn.sources.length + ' sources</span>';
    }
    if (!visible.length) return;
    if (M.layout === 'tabs') {
      ensureSourcesTab(turn);
      turn.sourcesTab.innerHTML = 'Links <span class="source-count">' + visible.length + '</span>';
    } else {
      ensureTrigger(turn);
      if (turn.trigger) turn.trigger.innerHTML = '<span>' + visible.length + ' sources</span>';
    }
    renderSources(turn);
  }

  // Inactive tab content is not rendered, as Radix leaves it unmounted.
  function renderSources(turn) {
    const visible = visibleSources(turn);
    if (M.layout === 'pane') {
      if (!turn.pane) return;
      turn.pane.innerHTML =
        '<div class="pane-header">Sources</div><div class="pane-list">' + visible.map((s) => M.sourceItem(s)).join('') + '</div>';
      return;
    }
    if (!turn.sourcesPanel) return;
    if (turn.sourcesPanel.getAttribute('data-state') !== 'active') {
      turn.sourcesPanel.innerHTML = '';
      return;
    }
    turn.sourcesPanel.innerHTML =
      '<div class="sources-header">' + M.sourcesHeader(turn) + '</div><div class="sources-list">' +
      visible.map((s) => M.sourceItem(s)).join('') +
      '</div>';
  }

  // With late sources: once the answer is done, one more entry shows every LATE_REVEAL_MS.
  function revealLater(turn) {
    if (!LATE_SOURCES || turn.revealing) return;
    turn.revealing = true;
    const tick = () => {
      if (!turn.root.isConnected) return;
      if (turn.revealed < turn.sources.length) {
        turn.revealed += 1;
        showSources(turn);
      }
      if (turn.revealed < turn.sources.length || !turn.final) setTimeout(tick, LATE_REVEAL_MS);
    };
    setTimeout(tick, LATE_REVEAL_MS);
  }

  function showError(turn, message) {
    const error = el('div', M.error);
    error.textContent = message;
    turn.body.appendChild(error);
  }

  // The answer is done: the footer (actions) first, then the Submit button (the signal).
  function showDone(turn, model) {
    if (turn.done) return;
    turn.done = true;
    const buttons = M.buttons().map((spec) => {
      const button = el('button', spec.attrs);
      if (spec.html) button.innerHTML = spec.html;
      else button.textContent = spec.text;
      return button;
    });
    const copy = buttons.find((b) => (b.getAttribute('aria-label') || '').startsWith('Copy'));
    if (copy) {
      copy.addEventListener('click', () => {
        if (navigator.clipboard) navigator.clipboard.writeText(turn.prose.innerText).catch(() => {});
      });
    }
    turn.footer.replaceChildren(...buttons);
    if (model && M.model) {
      const label = el('span', M.model);
      label.textContent = MODEL_LABELS[model] || model;
      turn.footer.appendChild(label);
    }
    if (!turn.footer.isConnected) turn.body.appendChild(turn.footer);
    active = null;
    showSubmit();
    showSources(turn);
    revealLater(turn);
  }

  // ---- markdown -------------------------------------------------------------------------------

  function inline(text, turn) {
    return esc(text)
      .replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>')
      .replace(/\[(\d+)\]/g, (whole, number) => {
        const source = turn.sources.find((s) => s.number === Number(number));
        return source ? M.chip(source) : whole;
      });
  }

  // The site's renderer knows bullets only, and adds no classes.
  function renderMarkdown(source, turn) {
    return window.aapSim.renderMarkdown(source, (text) => inline(text, turn));
  }

  // Chips have no anchor: a click opens the source.
  document.addEventListener('click', (event) => {
    const chip = event.target.closest('[data-pplx-citation-url]');
    if (chip) window.open(chip.getAttribute('data-pplx-citation-url'), '_blank', 'noopener');
  });

  // ---- the stream -----------------------------------------------------------------------------

  // RFC-6902 patches (add, replace, remove) applied to `doc`; the empty path replaces it.
  function applyPatches(doc, patches) {
    for (const patch of patches || []) {
      const value = patch.value === undefined ? undefined : JSON.parse(JSON.stringify(patch.value));
      if (patch.path === '') {
        doc = value;
        continue;
      }
      const keys = patch.path.split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
      let parent = doc;
      for (const key of keys.slice(0, -1)) parent = parent[Array.isArray(parent) ? Number(key) : key];
      const last = keys[keys.length - 1];
      if (Array.isArray(parent)) {
        const at = last === '-' ? parent.length : Number(last);
        if (patch.op === 'add') parent.splice(at, 0, value);
        else if (patch.op === 'remove') parent.splice(at, 1);
        else parent[at] = value;
      } else if (patch.op === 'remove') {
        delete parent[last];
      } else {
        parent[last] = value;
      }
    }
    return doc;
  }

  // Every block of the answer by its intended usage ({field: value}), as frames update them.
  function blockStore() {
    const blocks = {};
    return {
      apply(block) {
        const slot = blocks[block.intended_usage] || (blocks[block.intended_usage] = {});
        if (block.diff_block) {
          slot[block.diff_block.field] = applyPatches(slot[block.diff_block.field], block.diff_block.patches);
          return;
        }
        for (const [key, value] of Object.entries(block)) if (key.endsWith('_block')) slot[key] = value;
      },
      get(usage, field) {
        return blocks[usage] && blocks[usage][field];
      },
    };
  }

  // The answer's markdown: `ask_text` chunks, else the workflow's text item.
  function answerText(store) {
    const markdown = store.get('ask_text', 'markdown_block');
    if (markdown) return (markdown.chunks || []).join('') || markdown.answer || '';
    const workflow = store.get('workflow_root', 'workflow_block');
    for (const step of (workflow && workflow.steps) || []) {
      for (const item of step.items || []) {
        if (item.type !== 'WORKFLOW_ITEM_TEXT') continue;
        const payload = (item.payload && item.payload.text_payload) || {};
        return payload.text || (payload.chunks || []).join('');
      }
    }
    return '';
  }

  function hostOf(url) {
    try {
      return new URL(url).hostname.replace(/^www\./, '');
    } catch (_) {
      return '';
    }
  }

  // The web results that are sources, numbered as the text cites them ([n] = entry n-1).
  function webSources(store) {
    const block = store.get('web_results', 'web_result_block');
    return ((block && block.web_results) || [])
      .map((result, index) => ({
        number: index + 1,
        url: result.url,
        title: result.name || '',
        domain: (result.meta_data && result.meta_data.domain_name) || hostOf(result.url),
        widget: !!result.is_widget,
      }))
      .filter((source) => source.url && !source.widget);
  }

  async function ask(text) {
    hero.hidden = true;
    const turn = makeTurn(text);
    turns.appendChild(turn.root);
    turn.root.scrollIntoView({ block: 'end' });
    history.pushState({}, '', '/search/' + slugify(text));
    // A thread's tab is named by its question (ours: the words of the prompt).
    document.title = text + ' - Perplexity';

    const controller = new AbortController();
    active = { controller };
    showStop();
    const store = blockStore();
    const state = { text: '', final: false, error: null };
    try {
      const response = await postForEvents('/rest/sse/perplexity_ask', controller.signal, {
        query_str: text,
        params: {
          mode: 'concise',
          search_focus: 'internet',
          sources: ['web'],
          model_preference: 'turbo',
          version: '2.18',
          use_schematized_api: true,
          send_back_text_in_streaming_api: false,
          supported_block_use_cases: ['answer_modes', 'diff_blocks', 'shopping_widgets', 'workflow_steps'],
        },
      });
      if (response.status === 401) {
        // The session is gone: the site asks to sign in again.
        turn.root.remove();
        showLoginModal();
        return;
      }
      if (response.status === 403 && response.headers.get('cf-mitigated') === 'challenge') {
        // A challenge in the middle of a session: the browser reloads into it.
        location.assign(location.pathname + '?__cf_chl_rt_tk=' + Math.random().toString(36).slice(2));
        return;
      }
      if (!response.ok) {
        let message = GENERIC_ERROR;
        try {
          const body = await response.json();
          if (body && body.message) message = body.message;
        } catch (_) {
          // keep the generic message
        }
        showError(turn, message);
        return;
      }
      await readEvents(response, (frame, event) => {
        if (event === 'end_of_stream') return false;
        if (frame.error_code || frame.status === 'FAILED') {
          state.error = frame.error_message || GENERIC_ERROR;
          return false;
        }
        for (const block of frame.blocks || []) store.apply(block);
        const sources = webSources(store);
        if (sources.length !== turn.sources.length) {
          turn.sources = sources;
          showSources(turn);
        }
        const markdown = answerText(store);
        if (markdown !== state.text) {
          state.text = markdown;
          turn.prose.innerHTML = renderMarkdown(markdown, turn);
        }
        // The follow-ups (or the text's end) bring the footer and take the Stop control away.
        if (store.get('pending_followups', 'pending_followups_block') || frame.text_completed) {
          showDone(turn, frame.display_model);
        }
        if (frame.final_sse_message && frame.status === 'COMPLETED') {
          state.final = true;
          turn.final = true;
          showDone(turn, frame.display_model);
        }
        return true;
      });
      if (state.error) showError(turn, state.error);
      else if (!state.final) showError(turn, GENERIC_ERROR);
    } catch (error) {
      if (!(error && error.name === 'AbortError') && !state.final) showError(turn, GENERIC_ERROR);
    } finally {
      turn.final = true;
      if (active && active.controller === controller) {
        active = null;
        showSubmit();
      }
    }
  }

  syncComposer();
})();
