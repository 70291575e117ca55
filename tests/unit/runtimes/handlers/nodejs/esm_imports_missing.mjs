import missing from 'kfn-no-such-dependency';

export const handler = async (event) => missing(event);
