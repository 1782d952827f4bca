// Card application intake: shows the chosen face photo before the form is sent, and the reason
// list only for the kinds that take a reason. Nothing is sent anywhere by this script.
(function () {
  'use strict';
  var photo = document.getElementById('photo');
  var preview = document.getElementById('photo-preview');
  if (photo && preview) {
    photo.addEventListener('change', function () {
      var file = photo.files && photo.files[0];
      if (!file) {
        preview.hidden = true;
        preview.removeAttribute('src');
        return;
      }
      var reader = new FileReader();
      reader.onload = function () {
        preview.src = reader.result;
        preview.hidden = false;
      };
      reader.readAsDataURL(file);
    });
  }
  var kind = document.getElementById('kind');
  var reason = document.getElementById('reason-field');
  if (kind && reason) {
    var show = function () {
      var k = kind.value;
      reason.hidden = !(k === 'replacement' || k === 'reissue');
      var groups = reason.querySelectorAll('optgroup');
      for (var i = 0; i < groups.length; i++) groups[i].disabled = groups[i].getAttribute('data-kind') !== k;
    };
    kind.addEventListener('change', show);
    show();
  }
})();
