// aap-simulator: the interruptions real assistant sites put in a browser bot's way, for every
// look-alike alike. The server puts this file at the end of each site page's <body>, after
// `window.aapSimInterruptions = {...}` (the knobs in force and the site's own wording and hooks,
// see interrupt.rs). Each interruption comes from a knob (on arrival, or on the first focus or
// click as noted) or from a marker in the prompt (as the prompt is sent; Google's prompt is the
// `q` of the page's address, so there on arrival):
// - modal / [[modal]]: a dialog over the page whose backdrop takes every click and whose focus
//   trap takes the keys; its close button or Escape closes it (remembered for the profile);
// - banner / [[banner]]: a fixed banner from the bottom of the page up to above the composer;
//   its buttons close it (remembered), Escape does not;
// - alert, confirm / [[alert]], [[confirm]]: a JavaScript dialog on the composer's first focus;
// - beforeunload / [[beforeunload]]: once something was typed, leaving asks "Leave site?";
// - new_window / [[new-window]]: the first click opens a tab that takes the focus; while its own
//   tab is hidden the page holds its answer stream (window.aapSimHoldWhileHidden, read by
//   aapSim.readEvents in common.js);
// - sticky / [[sticky]]: the dialog has no close button and ignores Escape, the banner has no
//   buttons.
(() => {
  'use strict';
  const config = window.aapSimInterruptions;
  if (!config || window.aapSimInterruptionsInstalled) return;
  window.aapSimInterruptionsInstalled = true;
  const style = config.style;
  const MARKERS = {
    modal: '[[modal]]',
    banner: '[[banner]]',
    alert: '[[alert]]',
    confirm: '[[confirm]]',
    beforeunload: '[[beforeunload]]',
    new_window: '[[new-window]]',
    sticky: '[[sticky]]',
  };
  const DISMISSED = { modal: 'aap-sim-modal-dismissed', banner: 'aap-sim-banner-dismissed' };
  const FIELD = 'textarea, input[type="text"], input[type="search"], input:not([type])';

  // A composer: a text field, or an editable element (the outermost of an editable tree).
  function editable(el) {
    return !!el && el.nodeType === 1 && (el.matches(FIELD) || (el.isContentEditable && !el.parentElement.isContentEditable));
  }

  function editables() {
    return Array.from(document.body.querySelectorAll('*')).filter(editable);
  }

  function remembered(kind) {
    try {
      return localStorage.getItem(DISMISSED[kind]) === '1';
    } catch (_) {
      return false;
    }
  }

  function remember(kind) {
    try {
      localStorage.setItem(DISMISSED[kind], '1');
    } catch (_) {
      // A profile without storage shows it again next time.
    }
  }

  // What was set off in this tab, for tests to read: sessionStorage 'aap-sim-interruptions',
  // a count per kind ({"modal": 1, ...}), kept across the tab's pages of the origin.
  function count(kind) {
    try {
      const counts = JSON.parse(sessionStorage.getItem('aap-sim-interruptions') || '{}');
      counts[kind] = (counts[kind] || 0) + 1;
      sessionStorage.setItem('aap-sim-interruptions', JSON.stringify(counts));
    } catch (_) {
      // Counting is for tests only.
    }
  }

  function esc(text) {
    return String(text).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
  }

  function markersIn(text) {
    const found = {};
    for (const [name, marker] of Object.entries(MARKERS)) found[name] = String(text || '').includes(marker);
    return found;
  }

  // ---- the dialog --------------------------------------------------------------------------

  let modal = null;
  let modalSticky = false;

  function showModal(sticky) {
    if (modal && modal.isConnected) return;
    modalSticky = sticky;
    const m = style.modal;
    modal = document.createElement('div');
    modal.className = m.backdrop_class;
    modal.dataset.aapSim = 'modal';
    modal.setAttribute(
      'style',
      'position:fixed;inset:0;z-index:2147483000;background:rgba(0,0,0,.5);display:flex;' +
        'align-items:center;justify-content:center',
    );
    const close = sticky
      ? ''
      : '<button type="button" class="' + esc(m.close_class) + '" aria-label="' + esc(m.close_label) + '"' +
        (m.close_testid ? ' data-testid="' + esc(m.close_testid) + '"' : '') +
        ' style="position:absolute;top:8px;right:8px">\u00d7</button>';
    modal.innerHTML =
      '<div role="dialog" aria-modal="true" aria-labelledby="aap-sim-modal-title" tabindex="-1" class="' +
      esc(m.class) + '"' + (m.testid ? ' data-testid="' + esc(m.testid) + '"' : '') +
      ' data-state="open" style="position:relative;background:#fff;color:#111;max-width:440px;padding:24px;' +
      'border-radius:16px">' + close +
      '<h2 id="aap-sim-modal-title">' + esc(m.title) + '</h2><p>' + esc(m.text) + '</p>' +
      '<a class="' + esc(m.cta_class) + '" href="' + esc(style.popup_path) + '" target="_blank">' + esc(m.cta) + '</a>' +
      '</div>';
    const button = modal.querySelector('button');
    if (button) button.addEventListener('click', () => closeModal());
    document.body.appendChild(modal);
    modal.querySelector('[role="dialog"]').focus();
    count('modal');
  }

  function closeModal() {
    if (!modal) return;
    modal.remove();
    modal = null;
    remember('modal');
  }

  // The focus trap of a modal dialog: focus that leaves it is taken back.
  document.addEventListener(
    'focusin',
    (event) => {
      if (modal && modal.isConnected && !modal.contains(event.target)) {
        modal.querySelector('[role="dialog"]').focus();
      }
    },
    true,
  );

  document.addEventListener(
    'keydown',
    (event) => {
      if (event.key === 'Escape' && modal && modal.isConnected && !modalSticky) {
        event.stopPropagation();
        closeModal();
      }
    },
    true,
  );

  // ---- the banner --------------------------------------------------------------------------

  let banner = null;

  // From the bottom of the viewport up to a little above the composer, so it covers the
  // composer and the send button wherever the site puts them.
  function bannerHeight() {
    const composer = editables().find((el) => el.getClientRects().length);
    const top = composer ? composer.getBoundingClientRect().top : window.innerHeight - 140;
    return Math.max(140, Math.ceil(window.innerHeight - top + 16));
  }

  function showBanner(sticky) {
    if (banner && banner.isConnected) return;
    const b = style.banner;
    banner = document.createElement('div');
    banner.id = b.id;
    banner.className = b.class;
    banner.dataset.aapSim = 'banner';
    banner.setAttribute('role', 'region');
    banner.setAttribute('aria-label', b.label);
    const place = () => {
      banner.setAttribute(
        'style',
        'position:fixed;left:0;right:0;bottom:0;z-index:2147482000;background:#fff;color:#111;' +
          'border-top:1px solid #ccc;padding:16px 24px;box-sizing:border-box;height:' + bannerHeight() + 'px',
      );
    };
    const buttons = sticky
      ? ''
      : b.buttons
          .map(
            ([label, id]) =>
              '<button type="button"' + (id ? ' id="' + esc(id) + '"' : '') + ' class="' + esc(b.button_class) +
              '">' + esc(label) + '</button>',
          )
          .join(' ');
    banner.innerHTML = '<p>' + esc(b.text) + '</p><div>' + buttons + '</div>';
    for (const button of banner.querySelectorAll('button')) {
      button.addEventListener('click', () => {
        banner.remove();
        banner = null;
        remember('banner');
      });
    }
    place();
    window.addEventListener('resize', () => banner && place());
    document.body.appendChild(banner);
    count('banner');
  }

  // ---- JavaScript dialogs, leaving, new windows ----------------------------------------------

  function jsDialog(kind) {
    count(kind);
    if (kind === 'alert') window.alert(style.alert_text);
    else window.confirm(style.confirm_text);
  }

  let guardsLeaving = false;
  function guardLeaving() {
    if (guardsLeaving) return;
    guardsLeaving = true;
    count('beforeunload');
    window.addEventListener('beforeunload', (event) => {
      event.preventDefault();
      event.returnValue = '';
    });
  }

  function openWindow() {
    window.aapSimHoldWhileHidden = true;
    if (window.open(style.popup_path, '_blank')) count('new_window');
  }

  // ---- what sets them off --------------------------------------------------------------------

  function onArrival(on) {
    if (on.modal && (on.sticky || !remembered('modal'))) {
      // After the app has drawn itself, as the real ones do: a bot may see the composer first.
      setTimeout(() => showModal(on.sticky), 150);
    }
    if (on.banner && (on.sticky || !remembered('banner'))) showBanner(on.sticky);
    if (on.alert || on.confirm) {
      const kind = on.alert ? 'alert' : 'confirm';
      const once = (event) => {
        if (!editable(event.target) && !(event.target.isContentEditable)) return;
        document.removeEventListener('focusin', once, true);
        setTimeout(() => jsDialog(kind), 0);
      };
      document.addEventListener('focusin', once, true);
    }
    if (on.beforeunload) document.addEventListener('keydown', guardLeaving, { capture: true, once: true });
    if (on.new_window) document.addEventListener('click', openWindow, { capture: true, once: true });
  }

  // What a prompt's markers set off: the new tab and the guard at once, the dialog, the banner
  // and the JavaScript dialogs a moment later, while the answer streams.
  function fromMarkers(on) {
    if (on.new_window) openWindow();
    if (on.beforeunload) guardLeaving();
    if (on.modal || on.banner || on.alert || on.confirm) {
      setTimeout(() => {
        if (on.modal) showModal(on.sticky);
        if (on.banner) showBanner(on.sticky);
        if (on.alert) jsDialog('alert');
        else if (on.confirm) jsDialog('confirm');
      }, 600);
    }
  }

  // As the prompt is sent (Enter in an editable, or a click on a button), before the site's own
  // handler clears the composer. Google's results page keeps its query in the search box: its
  // markers acted as the page arrived, and a click on "Show more" or "Show all" sends nothing.
  function onSend() {
    const text = editables()
      .map((el) => (el.tagName === 'TEXTAREA' || el.tagName === 'INPUT' ? el.value : el.innerText))
      .join(' ');
    const shown = new URLSearchParams(location.search).get('q');
    if (shown && text.trim() === shown.trim()) return;
    fromMarkers(markersIn(text));
  }
  document.addEventListener(
    'keydown',
    (event) => {
      if (event.key === 'Enter' && !event.shiftKey && (editable(event.target) || event.target.isContentEditable)) onSend();
    },
    true,
  );
  document.addEventListener(
    'click',
    (event) => {
      if (event.target.closest && event.target.closest('button, [role="button"]') && !event.target.closest('[data-aap-sim]')) onSend();
    },
    true,
  );

  const knobs = {
    modal: !!config.modal,
    banner: !!config.banner,
    alert: !!config.alert,
    confirm: !!config.confirm,
    beforeunload: !!config.beforeunload,
    new_window: !!config.new_window,
    sticky: !!config.sticky,
  };
  // Google's prompt is the search itself: its markers act as the results page arrives.
  const query = markersIn(new URLSearchParams(location.search).get('q'));
  if (knobs.new_window || query.new_window) window.aapSimHoldWhileHidden = true;
  const start = () => {
    onArrival(knobs);
    fromMarkers(query);
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
