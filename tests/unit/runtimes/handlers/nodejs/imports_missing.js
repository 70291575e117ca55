const missing = require('kfn-no-such-dependency');

exports.handler = async (event) => missing(event);
