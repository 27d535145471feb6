package capi

import "sync"

// specDocCacheSize bounds the spec documents kept: enough for the requests
// in flight on a replica, each of which asks for its spec's document
// several times in a row.
const specDocCacheSize = 256

// specDocs holds the documents of the specs decoded last (specDocument).
var specDocs = &specDocCache{docs: map[string]map[string]any{}}

// specDocCache maps a spec's JSON encoding to its document. When full, an
// arbitrary entry makes room: the entries are used within a request.
type specDocCache struct {
	mu   sync.Mutex
	docs map[string]map[string]any
}

// get returns a copy of the document of the spec encoded as data, if kept.
func (c *specDocCache) get(data []byte) (map[string]any, bool) {
	c.mu.Lock()
	doc, ok := c.docs[string(data)]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	return copyValue(doc).(map[string]any), true
}

// put keeps doc, which no caller may change afterwards, for data.
func (c *specDocCache) put(data []byte, doc map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.docs) >= specDocCacheSize {
		for k := range c.docs {
			delete(c.docs, k)
			break
		}
	}
	c.docs[string(data)] = doc
}
