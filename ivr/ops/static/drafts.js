// The draft prompt page: a light check of placeholders as you type (the server's check
// on save stays the authority) and a Speak button per language (the browser's speech
// synthesis), so ops hear the wording. Without JavaScript the form still posts.
(function () {
  "use strict";
  var form = document.querySelector("form[data-allowed]");
  if (!form) { return; }
  var allowed = (form.getAttribute("data-allowed") || "").split(" ").filter(Boolean);

  function placeholders(text) {
    var found = [], re = /\{([^{}]*)\}/g, match;
    while ((match = re.exec(text)) !== null) { found.push(match[1]); }
    return found;
  }

  function check(area) {
    var list = form.querySelector('ul.placeholder-check[data-for="' + area.id + '"]');
    if (!list) { return; }
    list.textContent = "";
    placeholders(area.value).forEach(function (name) {
      if (allowed.indexOf(name) === -1) {
        var item = document.createElement("li");
        item.textContent = "{" + name + "} is not a placeholder this prompt may use" +
          (allowed.length ? " (allowed: " + allowed.map(function (a) { return "{" + a + "}"; }).join(" ") + ")" : "");
        list.appendChild(item);
      }
    });
  }

  form.querySelectorAll("textarea[data-placeholder-check]").forEach(function (area) {
    area.addEventListener("input", function () { check(area); });
    check(area);
  });

  if (!("speechSynthesis" in window)) { return; }
  form.querySelectorAll("button.speak").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var area = document.getElementById(button.getAttribute("data-speak"));
      if (!area || !area.value.trim()) { return; }
      window.speechSynthesis.cancel();
      var utterance = new SpeechSynthesisUtterance(area.value);
      utterance.lang = button.getAttribute("data-lang");
      window.speechSynthesis.speak(utterance);
    });
  });
})();
