/* "Speak" buttons ([data-speak] with data-lang): read a prompt aloud with the browser's
   own speech synthesis, in the prompt's language, so ops hear awkward wording before
   callers do. Buttons stay hidden where the browser cannot speak. */
(function () {
  "use strict";
  if (!("speechSynthesis" in window) || typeof window.SpeechSynthesisUtterance !== "function") return;

  function voiceFor(lang) {
    var voices = window.speechSynthesis.getVoices(), prefix = lang.split("-")[0];
    var exact = null, near = null;
    voices.forEach(function (voice) {
      if (!exact && voice.lang === lang) exact = voice;
      if (!near && voice.lang && voice.lang.split("-")[0] === prefix) near = voice;
    });
    return exact || near;
  }

  function speak(button) {
    var utterance = new window.SpeechSynthesisUtterance(button.getAttribute("data-speak"));
    var lang = button.getAttribute("data-lang") || document.documentElement.lang || "en-US";
    utterance.lang = lang;
    var voice = voiceFor(lang);
    if (voice) utterance.voice = voice;
    window.speechSynthesis.cancel();
    window.speechSynthesis.speak(utterance);
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-speak]"), function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { speak(button); });
  });
})();
