package web

import (
	"encoding/json"
	"net/url"
	"strings"
)

// redacted stands in for a value the cluster page does not show.
const redacted = "[redacted]"

// secretWords mark a key whose string value is a secret (compared in lower
// case with "-" and "_" removed): addon values such as
// auth.adminPassword or s3.secretAccessKey.
var secretWords = []string{"password", "passwd", "secret", "token", "apikey", "accesskey", "privatekey", "credential", "passphrase"}

// referenceSuffixes mark a key that names a secret rather than holding one
// (credentials.secretName, existingSecretRef).
var referenceSuffixes = []string{"name", "ref", "namespace"}

// redactSpec returns the stored spec with secret-looking values replaced:
// string values under keys that name a secret, PEM private keys, and the
// password of any URL. The spec itself is left as stored (the API returns
// it whole, for read-modify-write); this is for showing it.
func redactSpec(spec []byte) []byte {
	var doc any
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil
	}
	out, err := json.Marshal(redactValue("", doc))
	if err != nil {
		return nil
	}
	return out
}

func redactValue(key string, v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			v[k] = redactValue(k, child)
		}
		return v
	case []any:
		for i, child := range v {
			v[i] = redactValue(key, child)
		}
		return v
	case string:
		if v != "" && (secretKey(key) || strings.Contains(v, "PRIVATE KEY-----")) {
			return redacted
		}
		return redactURLPassword(v)
	default:
		return v
	}
}

// secretKey reports whether a value under key is likely a secret.
func secretKey(key string) bool {
	k := strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(key))
	for _, suffix := range referenceSuffixes {
		if strings.HasSuffix(k, suffix) {
			return false
		}
	}
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// redactURLPassword hides the password of a URL with one
// (https://user:pass@host/... shows as https://user:xxxxx@host/...).
func redactURLPassword(s string) string {
	if !strings.Contains(s, "://") || !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	return u.Redacted()
}
