{{/* The release's full name, at most 63 characters. */}}
{{- define "lok8s.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lok8s.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lok8s.labels" -}}
{{ include "lok8s.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "lok8s.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lok8s.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ClusterRole the service binds in each tenant namespace it makes. */}}
{{- define "lok8s.tenantRole" -}}
{{- printf "%s-tenant" (include "lok8s.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The watcher lease's name, in the release's namespace. */}}
{{- define "lok8s.leaseName" -}}
{{- default (printf "%s-watcher" (include "lok8s.fullname" .)) .Values.config.lease.name | trunc 63 | trimSuffix "-" }}
{{- end }}
