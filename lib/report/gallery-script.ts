/**
 * The page's only script: the gallery, rendered from the JSON the page embeds, one page of
 * cards at a time (so a 2000-image test set keeps a few hundred DOM nodes), filtered by
 * defect type and outcome, paged with buttons and keys. Plain ES2017, no dependencies; it
 * builds the cards with textContent (file names are never parsed as HTML).
 */
export const GALLERY_SCRIPT = String.raw`(function () {
  'use strict';
  var entries = JSON.parse(document.getElementById('gallery-data').textContent);
  var list = document.getElementById('gallery');
  var status = document.getElementById('gallery-status');
  var typeSel = document.getElementById('filter-type');
  var outcomeSel = document.getElementById('filter-outcome');
  var sortSel = document.getElementById('sort');
  var sizeSel = document.getElementById('page-size');
  var buttons = {
    first: document.getElementById('page-first'), prev: document.getElementById('page-prev'),
    next: document.getElementById('page-next'), last: document.getElementById('page-last')
  };
  var OUTCOME_TEXT = { TP: 'true positive', TN: 'true negative', FP: 'false positive', FN: 'false negative' };
  var page = 0;
  var shown = [];

  function matches(e) {
    var t = typeSel.value, o = outcomeSel.value;
    if (t !== 'all' && e.type !== t) return false;
    if (o === 'errors') return e.outcome === 'FP' || e.outcome === 'FN';
    return o === 'all' || e.outcome === o;
  }
  function pageCount() { return Math.max(1, Math.ceil(shown.length / Number(sizeSel.value))); }
  function fmt(v) { return Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.001) ? v.toExponential(3) : v.toPrecision(4); }

  function card(e) {
    var li = document.createElement('li');
    li.className = 'card outcome-' + e.outcome;
    var fig = document.createElement('figure');
    fig.tabIndex = 0;
    fig.setAttribute('aria-label', e.name + ', ' + (e.label ? 'defect ' + e.type : 'normal') + ', score ' + fmt(e.score) + ', ' + OUTCOME_TEXT[e.outcome]);
    var pair = document.createElement('div');
    pair.className = 'pair';
    function img(src, alt) {
      var im = document.createElement('img');
      im.src = src; im.alt = alt; im.width = e.w; im.height = e.h;
      im.loading = 'lazy'; im.decoding = 'async';
      pair.appendChild(im);
    }
    if (e.overlay) img(e.overlay, 'Anomaly map of ' + e.name + ' (score ' + fmt(e.score) + ') with the predicted defect outlined');
    img(e.truth, e.label ? 'Ground truth of ' + e.name + ': ' + e.type + ' defect outlined in red' : e.name + ': normal image, no defect');
    fig.appendChild(pair);
    var cap = document.createElement('figcaption');
    var badge = document.createElement('span');
    badge.className = 'badge ' + e.outcome;
    badge.textContent = e.outcome;
    badge.title = OUTCOME_TEXT[e.outcome];
    cap.appendChild(badge);
    var name = document.createElement('span');
    name.className = 'name';
    name.textContent = e.name;
    name.title = e.path;
    cap.appendChild(name);
    var info = document.createElement('span');
    info.className = 'info';
    info.textContent = 'score ' + fmt(e.score) + ' · ' + e.type;
    cap.appendChild(info);
    fig.appendChild(cap);
    li.appendChild(fig);
    return li;
  }

  function render(focus) {
    var size = Number(sizeSel.value);
    var pages = pageCount();
    if (page >= pages) page = pages - 1;
    if (page < 0) page = 0;
    var start = page * size;
    var frag = document.createDocumentFragment();
    for (var i = start; i < Math.min(shown.length, start + size); i++) frag.appendChild(card(shown[i]));
    list.replaceChildren(frag);
    status.textContent = shown.length === 0 ? 'No images match the filters.' :
      'Page ' + (page + 1) + ' of ' + pages + ': images ' + (start + 1) + '-' + Math.min(shown.length, start + size) + ' of ' + shown.length;
    buttons.first.disabled = buttons.prev.disabled = page === 0;
    buttons.next.disabled = buttons.last.disabled = page >= pages - 1;
    if (focus !== undefined) {
      var figs = list.querySelectorAll('figure');
      if (figs.length) figs[focus === 'last' ? figs.length - 1 : 0].focus();
    }
  }
  function refilter() {
    var desc = sortSel.value === 'score-desc';
    shown = entries.filter(matches).sort(function (a, b) { return desc ? b.score - a.score : a.score - b.score; });
    page = 0;
    render();
  }
  function go(p, focus) { page = p; render(focus); }

  [typeSel, outcomeSel, sortSel, sizeSel].forEach(function (s) { s.addEventListener('change', refilter); });
  buttons.first.addEventListener('click', function () { go(0); });
  buttons.prev.addEventListener('click', function () { go(page - 1); });
  buttons.next.addEventListener('click', function () { go(page + 1); });
  buttons.last.addEventListener('click', function () { go(pageCount() - 1); });

  // Arrow keys move between cards (across page ends), Up/Down by a row, Home/End to the
  // first/last card of the page, PageUp/PageDown to the previous/next page.
  list.addEventListener('keydown', function (ev) {
    var figs = Array.prototype.slice.call(list.querySelectorAll('figure'));
    var i = figs.indexOf(document.activeElement);
    if (i < 0) return;
    var top0 = figs[0].getBoundingClientRect().top, cols = 0;
    while (cols < figs.length && Math.abs(figs[cols].getBoundingClientRect().top - top0) < 2) cols++;
    var last = pageCount() - 1, target = -1;
    switch (ev.key) {
      case 'ArrowRight': if (i + 1 < figs.length) target = i + 1; else if (page < last) { go(page + 1, 'first'); ev.preventDefault(); return; } break;
      case 'ArrowLeft': if (i > 0) target = i - 1; else if (page > 0) { go(page - 1, 'last'); ev.preventDefault(); return; } break;
      case 'ArrowDown': target = Math.min(figs.length - 1, i + Math.max(1, cols)); break;
      case 'ArrowUp': target = Math.max(0, i - Math.max(1, cols)); break;
      case 'Home': target = 0; break;
      case 'End': target = figs.length - 1; break;
      case 'PageDown': if (page < last) go(page + 1, 'first'); ev.preventDefault(); return;
      case 'PageUp': if (page > 0) go(page - 1, 'first'); ev.preventDefault(); return;
      default: return;
    }
    ev.preventDefault();
    if (target >= 0) figs[target].focus();
  });
  refilter();
})();`;
