// Reads a Google search page for the bot, after the helpers of dom.js (`mode`, `sel`, ...). The
// modes:
//   probe           the state the wait loop needs (walls, results, the AI Overview block)
//   composer        the search box element, or null
//   composer_text   the text in the search box
//   show_more       the collapsed overview's "Show more" control, or null
//   sources_expand  the sources list's "Show all" control, or null
//   sources_count   how many source links the list shows
//   extract         the overview: html, text without chips, chips, links, sources

// The element itself or a descendant matching one of the selectors (markers may sit on the
// block itself after a redesign).
function selfOrInside(root, list) {
  return each(list, (s) => (root.matches(s) ? root : root.querySelector(s)));
}

function matchesAny(el, list) {
  return !!each(list, (s) => el.matches(s));
}

// Text inside `root` that is in the DOM but not rendered (a collapsed overview keeps its rest
// under display:none): the guard against reading half an answer.
function hiddenText(root) {
  let total = 0;
  const walk = (el) => {
    for (const child of el.children) {
      const style = getComputedStyle(child);
      if (style.display === 'none' || style.visibility === 'hidden') {
        total += (child.textContent || '').trim().length;
      } else {
        walk(child);
      }
    }
  };
  walk(root);
  return total;
}

function overviewRoot() {
  return first(document, sel.overview);
}

switch (mode) {
  case 'probe': {
    const overview = overviewRoot();
    let block = null;
    if (overview) {
      const answer = first(overview, sel.answer);
      const notice = firstShown(overview, sel.notice);
      const error = firstShown(overview, sel.error);
      block = {
        loading: !!firstShown(document, sel.loading),
        complete: !!selfOrInside(overview, sel.complete_marker),
        answer: !!answer,
        text_len: answer ? (answer.textContent || '').trim().length : 0,
        hidden_len: answer ? hiddenText(answer) : 0,
        signature: signature(overview.innerHTML),
        notice: notice ? textOf(notice) : null,
        error: error ? textOf(error) : null,
        show_more: !!firstShown(document, sel.show_more),
      };
    }
    const composer = !!firstShown(document, sel.composer);
    const results = !!first(document, sel.results);
    const challenge = firstShown(document, sel.challenge);
    return {
      ready: document.readyState === 'complete',
      path: location.pathname,
      title: document.title || '',
      composer,
      results,
      login_wall: !!firstShown(document, sel.login_wall),
      challenge: challenge ? textOf(challenge) || challenge.id || 'challenge' : null,
      // The text patterns only matter on a page that is none of the known ones.
      body_head: composer || results || overview ? '' : ((document.body && document.body.innerText) || '').slice(0, 1500),
      overview: block,
    };
  }
  case 'composer':
    return firstShown(document, sel.composer);
  case 'composer_text':
    return composerText(firstShown(document, sel.composer));
  case 'show_more':
    return firstShown(document, sel.show_more);
  case 'sources_expand': {
    const overview = overviewRoot();
    return overview ? firstShown(overview, sel.sources_expand) : null;
  }
  case 'sources_count': {
    const overview = overviewRoot();
    return overview ? every(overview, sel.sources_link).length : 0;
  }
  case 'extract': {
    const overview = overviewRoot();
    if (!overview) return null;
    const answer = first(overview, sel.answer);
    if (!answer) return null;
    const chips = every(answer, sel.citation_chip);
    const chipSet = new Set(chips);
    // Citations in reading order: each chip's link, and the name the chip shows.
    const perChip = chips.map((chip) => {
      const link = matchesAny(chip, sel.citation_link) ? chip : first(chip, sel.citation_link);
      if (!link) return null;
      const label = textOf(chip) || (link.getAttribute('aria-label') || '').replace(/\s+-\s+Related results$/i, '');
      return { href: hrefOf(link), text: label };
    });
    const cited = perChip.filter((source) => source);
    // Markdown source: chips become citation pills (`([name](url))` in the converter), every
    // link's href a token the bot swaps for the unwrapped, cleaned URL; headings become h-tags.
    const links = [];
    const md = answer.cloneNode(true);
    const mdChips = every(md, sel.citation_chip);
    mdChips.forEach((chip, index) => {
      const source = perChip[index];
      if (!source) {
        chip.remove();
        return;
      }
      chip.replaceWith(pill('aap-link-' + links.length, source.text));
      links.push(source.href);
    });
    md.querySelectorAll('a[href]').forEach((a) => {
      if ((a.getAttribute('href') || '').startsWith('aap-link-')) return;
      links.push(a.href);
      a.setAttribute('href', 'aap-link-' + (links.length - 1));
    });
    md.querySelectorAll('[role="heading"][aria-level]').forEach((heading) => {
      const level = Math.min(6, Math.max(1, parseInt(heading.getAttribute('aria-level'), 10) || 3));
      const h = document.createElement('h' + level);
      h.innerHTML = heading.innerHTML;
      heading.replaceWith(h);
    });
    const text = measuredText(copyWithout(answer, sel.citation_chip), 640);
    const sources = every(overview, sel.sources_link)
      .filter((a) => !chipSet.has(a) && !chips.some((chip) => chip.contains(a)))
      .map((a) => {
        const title = first(a, sel.sources_title);
        return {
          href: hrefOf(a),
          title: title ? textOf(title) : a.getAttribute('aria-label') || textOf(a),
        };
      });
    return { page_url: location.href, html: answer.innerHTML, md_html: md.innerHTML, text, cited, links, sources };
  }
  default:
    throw new Error('unknown page mode ' + mode);
}
