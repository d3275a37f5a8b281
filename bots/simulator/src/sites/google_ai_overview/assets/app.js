// aap-simulator google.com look-alike. Plain DOM code standing in for Google's results page: the
// search box submits on Enter; on a results page the AI Overview is loaded deferred from
// /async/folsrch, built in its "Generating" state, streamed, then collapsed behind "Show more".
// The markup of every variant (current, redesign, rhs-direct-links, inline-chips-only) follows
// sites/google_ai_overview/mod.rs.
(() => {
  'use strict';

  const { escapeHtml: esc, markdownBlocks, readEvents } = window.aapSim;

  const box = document.querySelector('textarea[name="q"]');
  if (box) {
    // Google's search box is a textarea, yet Enter searches instead of starting a new line.
    box.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter' || event.isComposing) return;
      event.preventDefault();
      if (box.value.trim()) box.closest('form').requestSubmit();
    });
  }

  const configElement = document.getElementById('aap-config');
  if (!configElement) return;
  const config = JSON.parse(configElement.textContent);
  const slot = document.getElementById('aio-slot');
  if (!config.q || !slot) return;

  // Blocks shown while collapsed: the rest is in the DOM but hidden until "Show more".
  const COLLAPSED_BLOCKS = 2;
  // Sources listed before "Show all".
  const COLLAPSED_SOURCES = 3;

  const CLASSIC = {
    shell: () =>
      '<div class="YzCcne" data-mcpr="" jscontroller="EYwa3d" data-async-type="folsrch" data-hveid="CAEQAA">' +
      '<div class="D5ad8b" id="m-x-content" data-ved="2ahUKEwjJ57fxiMmWAxWkM9AFHc7">' +
      '<div jsname="V3qe9d" class="s7d4ef X6JNf PFXse">' +
      '<div jsname="txosbe" class="OZ9ddf WAUd4"><div class="nk9vdc GYaNDc">' +
      '<span jsname="lGsj1" class="YWpX0d" style="display:none"><span>' + esc(config.notAvailable) + '</span></span>' +
      '<span jsname="L1sC6e" class="YWpX0d" style="display:none"><span>' + esc(config.unavailable) + '</span></span>' +
      '<div jsname="cUzNTd" class="Fzsovc cwYVJe RJPOee" aria-level="2" role="heading">AI Overview</div>' +
      '</div></div>' +
      '<div jsname="OOSRL" id="folsrch-ghost" class="GkDqAd"><div class="hoqQCc MyTwIe"><span>Generating</span></div>' +
      '<div class="D728fc"><div class="fxhBye KNMqcd"></div><div class="fxhBye LW22ac"></div><div class="fxhBye kzGhpe"></div></div></div>' +
      '<div jsname="Y0vxu" jsmodel="k8Azyd E23uIf" data-complete="false">' +
      '<div data-subtree="aimc" class="LT6XE">' +
      '<div><div jsname="KFl8ub" data-container-id="main-col" class="mZJni Dn7Fzd" dir="ltr">' +
      '<div style="display: contents" data-streaming-container=""></div></div>' +
      '<div class="qacuz Haco6c" role="alert" aria-live="assertive" style="display:none"></div></div>' +
      '<div data-container-id="rhs-col" class="ofHStc Dn7Fzd"></div>' +
      '</div></div></div></div>' +
      '<div class="RDmXvc"></div>' +
      '<div class="h7Tj7e"><div jsname="rPRdsc" class="clOx1e sjVJQd" role="button" tabindex="0" aria-controls="m-x-content" ' +
      'aria-expanded="false" jsaction="trigger.OiPALb" style="display:none"><span>Show more</span></div></div>' +
      '</div>',
    ghost: '#folsrch-ghost',
    completeHolder: '[jsname="Y0vxu"]',
    stream: '[jsname="KFl8ub"] [data-streaming-container]',
    alert: 'div.qacuz',
    rhs: '[data-container-id="rhs-col"]',
    showMore: '[jsname="rPRdsc"]',
    showNotice(root, which) {
      const notice = root.querySelector(which === 'none' ? '[jsname="lGsj1"]' : '[jsname="L1sC6e"]');
      notice.style.display = '';
    },
    paragraph: (inner) => '<div class="n6owBd awi2gc">' + inner + '</div>',
    heading: (inner) => '<div class="rPeykc" role="heading" aria-level="3">' + inner + '</div>',
    item: (inner) => '<li><span class="T286Pc">' + inner + '</span></li>',
    list: (items) => '<ul class="KsbFXc U6u95">' + items + '</ul>',
    strong: (inner) => '<strong class="rQesXe MPyX">' + inner + '</strong>',
    chip: (source) =>
      '<span class="WBgIic Wg1cdb notranslate"><span class="NMq1me" data-animation-atomic="">' +
      '<a class="PMDqCb" target="_blank" rel="noopener" aria-label="' + esc(source.label) + ' - Related results" href="' + esc(source.chip_href) + '"></a>' +
      '<button class="vDOt8c oy7Apc qu4n2c" tabindex="0" aria-label="' + esc(source.label) + ' - Related results">' +
      '<div class="S9OuHf"><span class="dNwgB"><span class="QNca8b">' + esc(source.label) + '</span></span></div></button></span></span>',
    sources: (items, more) =>
      '<div data-subtree="msc" class="Gs6Pqd"><ul class="bTFeG">' + items.join('') + '</ul>' +
      (more ? '<div role="button" class="BjvG9b" tabindex="0" aria-expanded="false"><span>Show all</span></div>' : '') + '</div>',
    sourceItem: (source) =>
      '<li class="jydCyd"><a class="KEVENd" target="_blank" rel="noopener" href="' + esc(source.list_href) + '" aria-label="' + esc(source.title) + '">' +
      '<div class="Nn35F"><div class="mNme1d">' + esc(source.title) + '</div><div class="gxZfx">' + esc(source.snippet) + '</div>' +
      '<div class="R0r5R"><span>' + esc(source.label) + '</span></div></div></a></li>',
    sourcesList: 'ul.bTFeG',
    showAll: 'div.BjvG9b',
    marksComplete: true,
    footer: '',
  };

  const REDESIGN = {
    shell: () =>
      '<div class="Ka8Ppc" data-subtree="aio" data-complete="false" aria-label="AI Overview" role="region">' +
      '<div class="pQ3Ag" role="heading" aria-level="2">AI Overview</div>' +
      '<div class="wR9vLd" role="status" style="display:none"></div>' +
      '<div class="Bv5Xkc" aria-busy="true"><span class="Gn7Wbe">Generating…</span>' +
      '<div class="fxhBye"></div><div class="fxhBye LW22ac"></div></div>' +
      '<div class="LT6XE"><div><div class="eT4Kqd" data-container-id="main-col"><div style="display: contents" data-streaming-container=""></div></div>' +
      '<div class="Vz7bq" role="alert" style="display:none"></div></div>' +
      '<div class="uR2Pwd" aria-label="Sources"></div></div>' +
      '<div class="m2Xqv" role="button" tabindex="0" aria-label="Show more AI Overview" aria-expanded="false" style="display:none"><span>Show more</span></div>' +
      '</div>',
    ghost: '.Bv5Xkc',
    completeHolder: null, // the block itself carries data-complete
    stream: '[data-container-id="main-col"] [data-streaming-container]',
    alert: 'div.Vz7bq',
    rhs: '.uR2Pwd',
    showMore: '.m2Xqv',
    showNotice(root, which) {
      const notice = root.querySelector('.wR9vLd');
      notice.textContent = which === 'none' ? config.notAvailable : config.unavailable;
      notice.style.display = '';
    },
    paragraph: (inner) => '<div class="Y3BBE">' + inner + '</div>',
    heading: (inner) => '<div class="otQkpb" role="heading" aria-level="3">' + inner + '</div>',
    item: (inner) => '<li>' + inner + '</li>',
    list: (items) => '<ul class="Tv8Hq">' + items + '</ul>',
    strong: (inner) => '<strong class="Yjhzub">' + inner + '</strong>',
    chip: (source) =>
      '<span class="Xr7c1 notranslate"><a class="nBq2e" target="_blank" rel="noopener" aria-label="' + esc(source.label) +
      ' - Related results" href="' + esc(source.chip_href) + '">' + esc(source.label) + '</a></span>',
    sources: (items, more) =>
      '<ul data-attrid="SGEAttributionFeedback" class="Lq2Vfd">' + items.join('') + '</ul>' +
      (more ? '<div class="Sx8Tb" role="button" tabindex="0" aria-label="Show all related links" aria-expanded="false">Show all</div>' : ''),
    sourceItem: (source) =>
      '<li><a href="' + esc(source.list_href) + '" target="_blank" rel="noopener" aria-label="' + esc(source.title) + '">' +
      '<div role="heading" aria-level="3">' + esc(source.title) + '</div><div class="R0r5R">' + esc(source.label) + ' · ' + esc(source.snippet) + '</div></a></li>',
    sourcesList: 'ul[data-attrid="SGEAttributionFeedback"]',
    showAll: '.Sx8Tb',
    marksComplete: true,
    footer: '',
  };

  // Fixtures of 2026-09 (see mod.rs): no #m-x-content, no data-complete; a progressbar while
  // generating; notices hidden by a stylesheet class; "Show more" with an aria-label and no
  // aria-controls, left in place as "Show less" once open; inline pills with a favicon; source
  // cards in rhs-col linking straight to the page; a feedback footer once done.
  const RHS = {
    shell: () =>
      '<div class="YzCcne" jscontroller="EYwa3d" data-hveid="CAEQAA"><div jsname="V3qe9d" class="s7d4ef">' +
      '<style>.YWpX0d{display:none}.YWpX0d.Fb0Vze{display:block}</style>' +
      '<span class="YWpX0d" data-n="none">' + esc(config.notAvailable) + '</span>' +
      '<span class="YWpX0d" data-n="unavailable">' + esc(config.unavailable) + '</span>' +
      '<div class="Fzsovc" role="heading" aria-level="2">AI Overview</div>' +
      '<div class="Vgb1cd" role="progressbar" aria-label="Generating"><div class="fxhBye"></div><div class="fxhBye LW22ac"></div></div>' +
      '<div data-subtree="aimc" class="LT6XE"><div>' +
      '<div data-container-id="main-col" class="pWvJNd"><div style="display: contents" class="Zq7Jd"></div></div>' +
      '<div class="Wv3Bqd" role="alert" style="display:none"></div></div>' +
      (config.variant === 'inline-chips-only' ? '<div></div>' : '<div data-container-id="rhs-col" class="ofHStc"></div>') +
      '</div>' +
      '<div class="Jzkafd" role="button" tabindex="0" aria-label="Show more AI Overview" aria-expanded="false" style="display:none"><span>Show more</span></div>' +
      '</div></div>',
    ghost: '[role="progressbar"]',
    completeHolder: null,
    stream: '[data-container-id="main-col"] > .Zq7Jd',
    alert: 'div.Wv3Bqd',
    rhs: config.variant === 'inline-chips-only' ? null : '[data-container-id="rhs-col"]',
    showMore: '.Jzkafd',
    showNotice(root, which) {
      root.querySelector('[data-n="' + which + '"]').classList.add('Fb0Vze');
    },
    paragraph: (inner) => '<div class="n6owBd">' + inner + '</div>',
    heading: (inner) => '<div class="otQkpb" role="heading" aria-level="3">' + inner + '</div>',
    item: (inner) => '<li>' + inner + '</li>',
    list: (items) => '<ul class="U6u95">' + items + '</ul>',
    strong: (inner) => '<strong>' + inner + '</strong>',
    chip: (source) =>
      '<span class="uQ0Fxb"><img class="Kr8Wb" alt="" src="https://encrypted-tbn0.gstatic.com/faviconV2?url=https://' + esc(source.label) + '">' +
      '<a class="Xk3Rf" target="_blank" rel="noopener" href="' + esc(source.chip_href) + '">' + esc(source.label) + '</a></span>',
    sources: (items, more) =>
      '<ul class="zVKf0d">' + items.join('') + '</ul>' +
      (more ? '<div class="Bq7Fnd" role="button" tabindex="0" aria-label="Show all related links" aria-expanded="false">Show all</div>' : ''),
    sourceItem: (source) =>
      '<li class="h7wxwc"><div class="cRH23c" data-src-id="' + esc(source.index === undefined ? 'own' : source.index) + '">' +
      '<a class="vIWmYe" target="_blank" rel="noopener" href="' + esc(source.href) + '" aria-label="' + esc(source.title) + '">' +
      (source.label ? '<img alt="" src="https://encrypted-tbn0.gstatic.com/faviconV2?url=https://' + esc(source.label) + '"><span class="jdxGff">' + esc(source.label) + '</span>' : '') +
      '<span class="gpZmoc">' + esc(source.title) + '</span></a>' +
      (source.snippet ? '<span class="hxIQcc">' + esc(source.snippet) + '</span>' : '') + '</div></li>',
    sourcesList: 'ul.zVKf0d',
    showAll: '.Bq7Fnd',
    marksComplete: false,
    footer: '<div class="fbk" role="group"><button class="Ue8Mb" aria-label="Good response"></button><button class="Ue8Mb" aria-label="Bad response"></button></div>',
    expandedStays: true,
  };

  const V = { redesign: REDESIGN, 'rhs-direct-links': RHS, 'inline-chips-only': RHS }[config.variant] || CLASSIC;
  const state = { text: '', sources: [], links: [], byIndex: {}, expanded: false, sourcesExpanded: false, sourcesShown: false };
  let ui = null;

  function buildBlock() {
    slot.innerHTML = V.shell();
    const root = slot.firstElementChild;
    ui = {
      root,
      ghost: root.querySelector(V.ghost),
      completeHolder: V.completeHolder ? root.querySelector(V.completeHolder) : root,
      stream: root.querySelector(V.stream),
      alert: root.querySelector(V.alert),
      rhs: V.rhs ? root.querySelector(V.rhs) : null,
      showMore: root.querySelector(V.showMore),
    };
    ui.showMore.addEventListener('click', expand);
    ui.showMore.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') expand();
    });
  }

  function stopLoading() {
    if (ui && ui.ghost && ui.ghost.isConnected) ui.ghost.remove();
  }

  // ---- text ---------------------------------------------------------------------------------

  function inline(text) {
    return esc(text)
      .replace(/\*\*([^*]+)\*\*/g, (_, inner) => V.strong(inner))
      .replace(/\s*\ue200cite\ue202turn0search(\d+)\ue201/g, (_, index) => {
        const source = state.byIndex[index];
        // Sources only listed have no chip in the text.
        return source && source.inline ? V.chip(source) : '';
      });
  }

  // Google's blocks: bullets only, the variant's markup, and a citation marker still streaming
  // in is not shown half-way.
  function blocksOf(source) {
    return markdownBlocks(source, inline, {
      hideOpenCitation: true,
      paragraph: V.paragraph,
      heading: V.heading,
      item: V.item,
      list: V.list,
    });
  }

  function render() {
    const blocks = blocksOf(state.text);
    ui.stream.innerHTML = blocks
      .map((html, index) => {
        if (state.expanded || index < COLLAPSED_BLOCKS) return html;
        // Collapsed: the block is there, hidden, as Google keeps the rest of the overview.
        return html.replace(/^<(\w+)/, '<$1 style="display:none"');
      })
      .join('');
    return blocks.length;
  }

  function expand() {
    if (state.expanded) return;
    state.expanded = true;
    render();
    ui.showMore.setAttribute('aria-expanded', 'true');
    if (V.expandedStays) ui.showMore.querySelector('span').textContent = 'Show less';
    else ui.showMore.style.display = 'none';
  }

  // ---- sources ------------------------------------------------------------------------------

  // The list (sources, then the variant's own links), once it is due: at once, or with
  // late_sources a moment after the overview completed.
  function renderSources() {
    if (!state.sourcesShown || !ui.rhs) return;
    const all = state.sources.concat(state.links);
    if (!state.sources.length) return;
    const shown = state.sourcesExpanded ? all : all.slice(0, COLLAPSED_SOURCES);
    const more = !state.sourcesExpanded && all.length > COLLAPSED_SOURCES;
    ui.rhs.innerHTML = V.sources(shown.map(V.sourceItem), more);
    const showAll = ui.rhs.querySelector(V.showAll);
    if (showAll) {
      showAll.addEventListener('click', () => {
        state.sourcesExpanded = true;
        renderSources();
      });
    }
  }

  // ---- stream -------------------------------------------------------------------------------

  function showError(message) {
    stopLoading();
    ui.alert.textContent = message;
    ui.alert.style.display = '';
  }

  function apply(event, payload) {
    switch (event) {
      case 'none':
        // No overview for this search: the page stays as it is, results only.
        return;
      case 'declined':
        // No overview for this search, said in the block's header.
        buildBlock();
        stopLoading();
        V.showNotice(ui.root, 'none');
        return;
      case 'unavailable':
        buildBlock();
        stopLoading();
        V.showNotice(ui.root, 'unavailable');
        return;
      case 'start':
        buildBlock();
        state.sources = payload.sources || [];
        state.links = payload.links || [];
        for (const source of state.sources) state.byIndex[source.index] = source;
        if (!config.lateSourcesMs) {
          state.sourcesShown = true;
          renderSources();
        }
        return;
      case 'chunk':
        state.text += payload.text || '';
        render();
        return;
      case 'error':
        showError(payload.message);
        state.failed = true;
        return;
      case 'done': {
        state.done = true;
        const blocks = render();
        stopLoading();
        if (V.marksComplete) ui.completeHolder.setAttribute('data-complete', 'true');
        if (V.footer && blocks) ui.stream.parentElement.insertAdjacentHTML('beforeend', V.footer);
        if (!state.expanded && blocks > COLLAPSED_BLOCKS) ui.showMore.style.display = '';
        if (config.lateSourcesMs) {
          setTimeout(() => {
            state.sourcesShown = true;
            renderSources();
          }, config.lateSourcesMs);
        }
        return;
      }
      default:
    }
  }

  async function load() {
    let response;
    try {
      response = await fetch('/async/folsrch?q=' + encodeURIComponent(config.q) + '&hl=en', {
        credentials: 'same-origin',
        headers: { accept: 'text/event-stream' },
      });
    } catch (_) {
      return;
    }
    if (response.status === 401) {
      // The session is gone: Google sends the browser to the consent wall.
      location.assign('/?hl=en');
      return;
    }
    if (response.status === 403) {
      location.reload();
      return;
    }
    if (!response.ok || !response.body) return;
    try {
      await readEvents(response, (payload, event) => {
        apply(event, payload);
      });
    } catch (_) {
      // A broken stream is judged below, as one that ended early.
    }
    // A stream that ends without its end event failed part of the way.
    if (ui && !state.done && !state.failed && ui.ghost && ui.ghost.isConnected) {
      showError('Something went wrong and the AI Overview wasn\u2019t generated. Try again later.');
    }
  }

  load();
})();
