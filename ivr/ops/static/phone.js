/* The simulator's phone: speak prompts, key presses that fill the entry without a
   round trip, typing digits on the phone, and codes keyed in from the outbox list.
   Without this file every button still works: each one submits the form. */
(function () {
  "use strict";
  var MAX_KEYS = 32;
  var KEY = /^[0-9*#]$/;

  function speakButtons() {
    if (!("speechSynthesis" in window)) return;
    document.querySelectorAll("button.speak").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var words = new SpeechSynthesisUtterance(button.dataset.text || "");
        if (button.dataset.lang) words.lang = button.dataset.lang;
        window.speechSynthesis.cancel();
        window.speechSynthesis.speak(words);
      });
    });
  }

  function keypad() {
    var entry = document.getElementById("entry");
    var phone = document.getElementById("phone");
    if (!entry || !phone) return;
    var send = document.querySelector("#answer button.send");

    function add(key) {
      if (entry.value.length < MAX_KEYS) entry.value += key;
    }

    document.querySelectorAll("#answer button.key").forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault(); // the entry fills here; Send posts it
        add(button.dataset.key);
      });
    });
    var clear = document.querySelector("#answer button.clear");
    if (clear) {
      clear.addEventListener("click", function (event) {
        event.preventDefault();
        entry.value = "";
      });
    }
    document.querySelectorAll("button.keyin").forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        entry.value = button.dataset.code || "";
        entry.focus();
      });
    });
    // Typing on the phone (anywhere but a text field) presses keys; Enter sends.
    phone.addEventListener("keydown", function (event) {
      if (event.target === entry || event.ctrlKey || event.metaKey || event.altKey) return;
      var onButton = event.target instanceof HTMLButtonElement;
      if (KEY.test(event.key)) {
        event.preventDefault();
        add(event.key);
      } else if (event.key === "Backspace") {
        event.preventDefault();
        entry.value = entry.value.slice(0, -1);
      } else if (event.key === "Enter" && !onButton && send) {
        event.preventDefault();
        send.click();
      }
    });
    // Only keys the phone has reach the entry, whatever is typed or pasted into it.
    entry.addEventListener("input", function () {
      var cleaned = entry.value.replace(/[^0-9*#]/g, "").slice(0, MAX_KEYS);
      if (cleaned !== entry.value) entry.value = cleaned;
    });
  }

  // Choosing another flow lists that flow's versions (without JavaScript: the links).
  function flowChoice() {
    var flow = document.querySelector("form[data-testid=start-form] select[name=flow]");
    if (!flow) return;
    flow.addEventListener("change", function () {
      var link = document.querySelector("a.flow-link[data-flow='" + flow.value + "']");
      if (link) window.location.assign(link.href);
    });
  }

  // The newest words are at the bottom of the transcript: show them.
  function latestWords() {
    var transcript = document.querySelector("ol.transcript");
    if (transcript) transcript.scrollTop = transcript.scrollHeight;
  }

  speakButtons();
  flowChoice();
  latestWords();
  keypad();
})();
