{{- define "xaynet.fullname" -}}
{{ .Release.Name }}-xaynet-operator
{{- end -}}
{{- define "xaynet.selectorLabels" -}}
app.kubernetes.io/name: xaynet-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "xaynet.labels" -}}
{{ include "xaynet.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{/* repository@digest when a digest is given (pinned), else repository:tag (tag defaults to appVersion). */}}
{{- define "xaynet.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}
{{/*
The namespaces the operator watches, as a JSON list; empty when it watches all of them.
operator.allNamespaces=false with no operator.namespaces watches the release's own namespace.
Use: {{ range (include "xaynet.watchedNamespaces" . | fromJsonArray) }}
*/}}
{{- define "xaynet.watchedNamespaces" -}}
{{- if .Values.operator.allNamespaces -}}
[]
{{- else if .Values.operator.namespaces -}}
{{ .Values.operator.namespaces | uniq | toJson }}
{{- else -}}
{{ list .Release.Namespace | toJson }}
{{- end -}}
{{- end -}}
