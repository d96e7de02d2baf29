// The deoss console's only script (docs/console.md §4.1). It uploads with progress,
// watches the uploaded object until the chain has it Active, and asks before a delete.
// It writes text only (textContent, never innerHTML), so no name can become markup.
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function setText(id, text) {
    const element = document.getElementById(id);
    if (element) {
      element.textContent = text;
    }
  }

  function answerOf(xhr) {
    try {
      return JSON.parse(xhr.responseText);
    } catch (error) {
      return { error: "BadAnswer", message: "HTTP " + xhr.status };
    }
  }

  // Asks for the object's state every second until it is Active (or 10 minutes pass).
  function watch(form, name) {
    const started = Date.now();
    const ask = function () {
      const xhr = new XMLHttpRequest();
      xhr.open("GET", form.dataset.state + "?" + new URLSearchParams({ name: name }));
      xhr.addEventListener("load", function () {
        const answer = answerOf(xhr);
        if (xhr.status !== 200) {
          setText("upload-status", "Stored " + name + "; its state is unknown: " + answer.message);
          return;
        }
        setText("upload-status", "Stored " + name + " (" + answer.fid.slice(0, 12) + "…): " + answer.state);
        document.getElementById("upload-status").dataset.state = answer.state;
        if (answer.state !== "Active" && Date.now() - started < 600000) {
          window.setTimeout(ask, 1000);
        }
      });
      xhr.send();
    };
    ask();
  }

  function upload(form, event) {
    event.preventDefault();
    const file = form.elements.file.files[0];
    if (!file) {
      setText("upload-status", "Choose a file first.");
      return;
    }
    const name = form.elements.name.value || file.name;
    const query = new URLSearchParams({ name: name, territory: form.elements.territory.value });
    const progress = document.getElementById("upload-progress");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.upload + "?" + query);
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", function (progressEvent) {
      if (progressEvent.lengthComputable) {
        progress.max = progressEvent.total;
        progress.value = progressEvent.loaded;
        setText("upload-percent", Math.floor((100 * progressEvent.loaded) / progressEvent.total) + " %");
      }
    });
    xhr.addEventListener("load", function () {
      const answer = answerOf(xhr);
      if (xhr.status === 200) {
        progress.max = 1;
        progress.value = 1;
        setText("upload-percent", "100 %");
        setText("upload-status", "Stored " + answer.name + ": " + answer.state);
        watch(form, answer.name);
      } else {
        setText("upload-status", "Refused (" + xhr.status + " " + answer.error + "): " + answer.message);
      }
    });
    xhr.addEventListener("error", function () {
      setText("upload-status", "The upload failed: the gateway could not be reached.");
    });
    setText("upload-status", "Uploading " + name + "…");
    xhr.send(file);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("upload-form");
    if (form) {
      form.addEventListener("submit", function (event) {
        upload(form, event);
      });
    }
    document.querySelectorAll("form[data-confirm]").forEach(function (each) {
      each.addEventListener("submit", function (event) {
        if (!window.confirm(each.dataset.confirm)) {
          event.preventDefault();
        }
      });
    });
  });
})();
