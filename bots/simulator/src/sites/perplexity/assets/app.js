// aap-simulator: perplexity.ai page script. Plain DOM code standing in for the site's React app.
// It keeps the hooks and the timing shape browser automation sees on the real site: the
// contenteditable #ask-input, a Submit button that turns into a Stop button while answering,
// the answer in .prose with citation chips, the Answer / Links tabs, and a sources list that
// keeps filling after the answer text has finished. See sites/perplexity/mod.rs for evidence.
(() => {
  'use strict';

  const { escapeHtml: esc, readEvents, sendOnEnter, postForEvents } = window.aapSim;
  const REDESIGN = document.documentElement.dataset.variant === 'redesign';
  const GENERIC_ERROR = 'Something went wrong. Please try again later.';
  const ICON_SUBMIT =
    '<svg width="18" height="18" viewBox="0 0 20 20" aria-hidden="true"><path d="M10 16V4M5 9l5-5 5 5" stroke="currentColor" stroke-width="2" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>';
  const ICON_STOP =
    '<svg width="18" height="18" viewBox="0 0 20 20" aria-hidden="true"><rect x="6" y="6" width="8" height="8" rx="1.5" fill="currentColor"/></svg>';

  // The two markups: the current site and a redesign with other test ids and classes. Only
  // what differs lives here; everything else is shared.
  const M = REDESIGN
    ? {
        submitTestid: 'query-submit',
        stopTestid: 'query-stop',
        turn: () => el('section', { class: 'thread-turn', 'data-turn': '' }),
        tabId: (k, name) => 'tabs-' + k + '-' + name,
        sourcesName: 'links',
        sourcesTab: { 'data-testid': 'sources-tab' },
        sourcesPanel: { 'data-testid': 'sources-panel' },
        steps: { class: 'search-steps' },
        prose: () => ({ class: 'prose answer-body' }),
        error: { class: 'answer-error', role: 'alert' },
        copy: { 'aria-label': 'Copy answer', 'data-testid': 'copy-answer-button' },
        model: { class: 'model-badge' },
        chip: (source) =>
          '<a class="citation" href="' + esc(source.url) + '" target="_blank" rel="noopener" data-citation-number="' +
          source.number + '"><span class="citation-number">[' + source.number + ']</span></a>',
        sourceItem: (source) =>
          '<a class="source-card" href="' + esc(source.url) + '" target="_blank" rel="noopener">' +
          '<span class="source-number">' + source.number + '</span>' +
          '<div class="source-title">' + esc(source.title) + '</div>' +
          '<div class="source-domain">' + esc(source.domain) + '</div></a>',
        loginTestid: 'auth-modal',
      }
    : {
        submitTestid: 'submit-button',
        stopTestid: 'stop-generating-response-button',
        turn: () => el('div', { class: 'thread-turn pb-md', 'data-testid': 'thread-turn' }),
        tabId: (k, name) => 'radix-:r' + k + ':-' + name,
        sourcesName: 'sources',
        sourcesTab: {},
        sourcesPanel: {},
        steps: { 'data-testid': 'search-steps', class: 'search-steps-2026' },
        prose: (k) => ({
          id: 'markdown-content-' + k,
          class: 'prose text-pretty dark:prose-invert inline leading-normal break-words min-w-0 [word-break:break-word]',
        }),
        error: { 'data-testid': 'answer-error', class: 'answer-error-2026', role: 'alert' },
        copy: { 'aria-label': 'Copy' },
        model: { 'data-testid': 'answer-model-label', class: 'model-label' },
        // Chips carry their source in an attribute and have no anchor (see the evidence).
        chip: (source) =>
          '<span class="citation inline" data-pplx-citation="" data-pplx-citation-url="' + esc(source.url) +
          '" aria-label="' + esc(siteName(source.domain)) + '"><span class="citation-chip rounded-badge">' +
          '<span class="text-3xs">' + esc(siteName(source.domain)) + '</span></span></span>',
        sourceItem: (source) =>
          '<div class="source-item"><a data-testid="source-link" class="source-card-2026" href="' + esc(source.url) +
          '" target="_blank" rel="noopener"><div class="source-number">' + source.number + '</div>' +
          '<div data-testid="source-title" class="line-clamp-2 source-title">' + esc(source.title) + '</div>' +
          '<div class="source-domain">' + esc(source.domain) + '</div></a></div>',
        loginTestid: 'login-modal',
      };

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

  // "www.techradar.com" -> "techradar": the name a chip shows.
  function siteName(domain) {
    const parts = String(domain).replace(/^www\./, '').split('.');
    return parts.length > 1 ? parts[parts.length - 2] : parts[0];
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
    const button = el('button', {
      type: 'button',
      'data-testid': M.submitTestid,
      'aria-label': 'Submit',
      class: 'interactable rounded-full bg-button-bg submit',
    });
    button.innerHTML = ICON_SUBMIT;
    slot.replaceChildren(button);
    syncComposer();
  }

  function showStop() {
    const button = el('button', {
      type: 'button',
      'data-testid': M.stopTestid,
      'aria-label': 'Stop',
      class: 'interactable rounded-full stop',
    });
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
    const span = el('span', { 'data-lexical-text': 'true' });
    span.textContent = text;
    heading.appendChild(span);
    query.appendChild(heading);
    const copyQuery = el('button', { type: 'button', 'data-testid': 'copy-query-button', 'aria-label': 'Copy Query', class: 'ghost' });
    copyQuery.textContent = '⧉';
    query.appendChild(copyQuery);
    root.appendChild(query);

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
    const prose = el('div', M.prose(k));
    answerPanel.appendChild(prose);
    const actions = el('div', { class: 'answer-actions' });
    answerPanel.appendChild(actions);
    root.appendChild(answerPanel);

    const turn = { k, root, tabs, answerTab, answerPanel, prose, actions, sourcesTab: null, sourcesPanel: null, steps: null, sources: [] };
    answerTab.addEventListener('mousedown', () => selectTab(turn, 'answer'));
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
    turn.steps = el('div', M.steps);
    turn.answerPanel.insertBefore(turn.steps, turn.prose);
  }

  // Sources arrive by number, not in order: each goes in its numbered place.
  function addSource(turn, source) {
    if (turn.sources.some((s) => s.number === source.number)) return;
    turn.sources.push(source);
    turn.sources.sort((a, b) => a.number - b.number);
    ensureSourcesTab(turn);
    turn.sourcesTab.innerHTML = 'Links <span class="source-count">' + turn.sources.length + '</span>';
    turn.steps.innerHTML =
      '<span class="step">Searching the web</span><span class="step">Reviewed ' + turn.sources.length + ' sources</span>';
    if (turn.sourcesPanel.getAttribute('data-state') === 'active') renderSources(turn);
  }

  // Inactive tab content is not rendered, as Radix leaves it unmounted.
  function renderSources(turn) {
    if (!turn.sourcesPanel) return;
    if (turn.sourcesPanel.getAttribute('data-state') !== 'active') {
      turn.sourcesPanel.innerHTML = '';
      return;
    }
    turn.sourcesPanel.innerHTML =
      '<div class="sources-header">Search results</div><div class="sources-list">' +
      turn.sources.map((s) => M.sourceItem(s)).join('') +
      '</div>';
  }

  function showError(turn, message) {
    const error = el('div', M.error);
    error.textContent = message;
    turn.answerPanel.insertBefore(error, turn.actions);
  }

  function showActions(turn, model) {
    const copy = el('button', Object.assign({ type: 'button', class: 'ghost' }, M.copy));
    copy.textContent = 'Copy';
    copy.addEventListener('click', () => {
      if (navigator.clipboard) navigator.clipboard.writeText(turn.prose.innerText).catch(() => {});
    });
    const share = el('button', { type: 'button', 'aria-label': 'Share', class: 'ghost' });
    share.textContent = 'Share';
    const rewrite = el('button', { type: 'button', 'aria-label': 'Rewrite', class: 'ghost' });
    rewrite.textContent = 'Rewrite';
    turn.actions.replaceChildren(share, rewrite, copy);
    if (model) {
      const label = el('span', M.model);
      label.textContent = model;
      turn.actions.appendChild(label);
    }
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

  // ---- streaming ------------------------------------------------------------------------------

  async function ask(text) {
    hero.hidden = true;
    const turn = makeTurn(text);
    turns.appendChild(turn.root);
    turn.root.scrollIntoView({ block: 'end' });
    history.pushState({}, '', '/search/' + slugify(text));

    const controller = new AbortController();
    active = { controller };
    showStop();
    const state = { text: '', final: false, error: null };
    try {
      const response = await postForEvents('/rest/sse/perplexity_ask', controller.signal, {
        query_str: text,
        params: { mode: 'concise', search_focus: 'internet', sources: ['web'], model_preference: 'turbo', version: '2.18' },
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
      await readEvents(response, (event) => {
        switch (event.type) {
          case 'search':
            for (const source of event.sources || []) addSource(turn, source);
            break;
          case 'chunk':
            state.text += event.text;
            turn.prose.innerHTML = renderMarkdown(state.text, turn);
            break;
          case 'final':
            state.final = true;
            // The answer is done: actions first, the Submit button last (the signal).
            showActions(turn, event.model);
            active = null;
            showSubmit();
            break;
          case 'source':
            addSource(turn, event.source);
            break;
          case 'error':
            state.error = event.message || GENERIC_ERROR;
            return false;
          case 'done':
            return false;
          default:
            break;
        }
        return true;
      });
      if (state.error) showError(turn, state.error);
      else if (!state.final) showError(turn, GENERIC_ERROR);
    } catch (error) {
      if (!(error && error.name === 'AbortError') && !state.final) showError(turn, GENERIC_ERROR);
    } finally {
      if (active && active.controller === controller) {
        active = null;
        showSubmit();
      }
    }
  }

  syncComposer();
})();
