package api

import (
	"net/http"
)

func (s *Server) catalog(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.svc.Catalog(r.Context()))
}
