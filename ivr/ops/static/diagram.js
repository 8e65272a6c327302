/* The flow diagram: pan (drag, arrows), zoom (buttons, Ctrl/Cmd+wheel, + and -) and
   moving between nodes with the arrow keys. Without this file the diagram is a plain
   SVG in a scrollable box and every node is still a link.

   It starts at 100%, not fitted: the default flow is some 6000 px wide, and fitted
   to a 1280 px window its 12 px labels would shrink to 2-3 px, unreadable. At 100%
   the text is readable at once and the chosen node is scrolled into view; "Fit width"
   gives the overview. */
(function () {
  "use strict";
  var MIN = 0.15, MAX = 3, STEP = 1.25, SCROLL = 80;

  function setUp(root) {
    if (root.getAttribute("data-ready") === "yes") return;
    root.setAttribute("data-ready", "yes");
    var viewport = root.querySelector(".diagram-viewport");
    var svg = root.querySelector("svg.flow-diagram");
    var tools = root.querySelector("[data-diagram-tools]");
    if (!viewport || !svg) return;
    var baseWidth = parseFloat(svg.getAttribute("data-width"));
    var baseHeight = parseFloat(svg.getAttribute("data-height"));
    var level = root.querySelector("[data-zoom-level]");
    var scale = 1;

    function zoomTo(next, anchorX, anchorY) {
      next = Math.min(MAX, Math.max(MIN, next));
      // Keep the drawing's point under the anchor (the pointer, or the middle) in place.
      if (anchorX === undefined) { anchorX = viewport.clientWidth / 2; anchorY = viewport.clientHeight / 2; }
      var x = (viewport.scrollLeft + anchorX) / scale, y = (viewport.scrollTop + anchorY) / scale;
      scale = next;
      svg.setAttribute("width", String(baseWidth * scale));
      svg.setAttribute("height", String(baseHeight * scale));
      viewport.scrollLeft = x * scale - anchorX;
      viewport.scrollTop = y * scale - anchorY;
      if (level) level.textContent = Math.round(scale * 100) + "%";
    }

    if (tools) {
      tools.hidden = false;
      tools.addEventListener("click", function (event) {
        var button = event.target.closest("[data-zoom]");
        if (!button) return;
        var how = button.getAttribute("data-zoom");
        if (how === "in") zoomTo(scale * STEP);
        else if (how === "out") zoomTo(scale / STEP);
        else if (how === "fit") zoomTo((viewport.clientWidth - 4) / baseWidth, 0, 0);
        else zoomTo(1);
      });
    }

    viewport.addEventListener("wheel", function (event) {
      if (!event.ctrlKey && !event.metaKey) return; // a plain wheel scrolls
      event.preventDefault();
      var box = viewport.getBoundingClientRect();
      zoomTo(event.deltaY < 0 ? scale * STEP : scale / STEP, event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });

    // Drag to pan; a drag that started on a node does not also follow its link.
    var drag = null, dragged = false;
    viewport.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      drag = { x: event.clientX, y: event.clientY, left: viewport.scrollLeft, top: viewport.scrollTop };
      dragged = false;
    });
    viewport.addEventListener("pointermove", function (event) {
      if (!drag) return;
      var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!dragged && Math.abs(dx) + Math.abs(dy) < 5) return;
      dragged = true;
      viewport.classList.add("is-dragging");
      viewport.scrollLeft = drag.left - dx;
      viewport.scrollTop = drag.top - dy;
    });
    function endDrag() { drag = null; viewport.classList.remove("is-dragging"); }
    viewport.addEventListener("pointerup", endDrag);
    viewport.addEventListener("pointerleave", endDrag);
    viewport.addEventListener("click", function (event) {
      if (dragged) { event.preventDefault(); dragged = false; }
    }, true);

    var nodes = Array.prototype.slice.call(svg.querySelectorAll("[data-node]"));
    function centre(node) {
      var box = node.querySelector(".node-box");
      return {
        x: parseFloat(box.getAttribute("x")) + parseFloat(box.getAttribute("width")) / 2,
        y: parseFloat(box.getAttribute("y")) + parseFloat(box.getAttribute("height")) / 2
      };
    }
    // The nearest node in a direction: distance along it, sideways distance counting double.
    function neighbour(from, dx, dy) {
      var here = centre(from), best = null, bestScore = Infinity;
      nodes.forEach(function (node) {
        if (node === from) return;
        var there = centre(node);
        var along = (there.x - here.x) * dx + (there.y - here.y) * dy;
        if (along <= 0) return;
        var aside = Math.abs((there.x - here.x) * dy) + Math.abs((there.y - here.y) * dx);
        var score = along + 2 * aside;
        if (score < bestScore) { bestScore = score; best = node; }
      });
      return best;
    }
    function reveal(node) {
      var at = centre(node);
      var x = at.x * scale - viewport.scrollLeft, y = at.y * scale - viewport.scrollTop;
      if (x < 40 || x > viewport.clientWidth - 40) viewport.scrollLeft = at.x * scale - viewport.clientWidth / 2;
      if (y < 40 || y > viewport.clientHeight - 40) viewport.scrollTop = at.y * scale - viewport.clientHeight / 2;
    }
    nodes.forEach(function (node) { node.addEventListener("focus", function () { reveal(node); }); });

    var arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    viewport.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "+" || event.key === "=") { zoomTo(scale * STEP); event.preventDefault(); return; }
      if (event.key === "-" || event.key === "_") { zoomTo(scale / STEP); event.preventDefault(); return; }
      if (event.key === "0") { zoomTo(1); event.preventDefault(); return; }
      var way = arrows[event.key];
      if (!way) return;
      event.preventDefault();
      var node = event.target.closest ? event.target.closest("[data-node]") : null;
      if (node) {
        var next = neighbour(node, way[0], way[1]);
        if (next) next.focus();
      } else {
        viewport.scrollLeft += way[0] * SCROLL;
        viewport.scrollTop += way[1] * SCROLL;
      }
    });

    var chosen = svg.querySelector(".is-current") || svg.querySelector(".is-selected");
    if (chosen) reveal(chosen);
  }

  // A page that swaps a diagram in after loading calls window.ivrDiagram.setUpAll().
  function setUpAll() { Array.prototype.forEach.call(document.querySelectorAll("[data-diagram]"), setUp); }
  window.ivrDiagram = { setUpAll: setUpAll };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUpAll);
  else setUpAll();
})();
