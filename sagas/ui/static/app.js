// The sagas UI's only script: actions (with the token kept for this tab) and filter submits.
"use strict";
(function () {
  const tokenBox = document.getElementById("token");
  const flash = document.getElementById("flash");
  if (tokenBox) {
    tokenBox.value = sessionStorage.getItem("sagas-token") || "";
    tokenBox.addEventListener("change", () => sessionStorage.setItem("sagas-token", tokenBox.value));
  }
  function say(text) { flash.textContent = text; }
  async function act(action, body) {
    const token = tokenBox ? tokenBox.value : "";
    if (!token) { say("enter the token first"); return; }
    const answer = await fetch("/api/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
      body: JSON.stringify(body),
    });
    const reply = await answer.json().catch(() => ({}));
    say(answer.ok ? action + ": " + reply.done : action + " failed: " + (reply.error || answer.status));
    if (answer.ok) { setTimeout(() => location.reload(), 1500); }
  }
  const box = document.querySelector(".actions");
  if (box) {
    box.querySelectorAll("form").forEach((form) => form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = Object.fromEntries(new FormData(form).entries());
      body.saga_type = box.dataset.type;
      body.saga_id = box.dataset.id;
      act(form.dataset.action, body);
    }));
  }
  document.querySelectorAll("button[data-replay]").forEach((button) => button.addEventListener(
    "click", () => act("replay", { topic: button.dataset.topic, offsets: [Number(button.dataset.replay)] })));
  document.querySelectorAll(".filters select").forEach((select) => select.addEventListener(
    "change", () => select.form.submit()));
})();
