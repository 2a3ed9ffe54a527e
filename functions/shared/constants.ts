// Fixed object keys shared by the CDK app, the handlers and the CLI.

/** PEM public key of the manifest-signing KMS key, written at deploy time. */
export const PUBLIC_KEY_OBJECT = 'keys/manifest-signing.pub.pem';
