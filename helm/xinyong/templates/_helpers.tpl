{{- define "xinyong.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "xinyong.componentName" -}}
{{- printf "%s-%s" (include "xinyong.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "xinyong.labels" -}}
app.kubernetes.io/name: xinyong
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "xinyong.selectorLabels" -}}
app.kubernetes.io/name: xinyong
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "xinyong.secretName" -}}
{{- default (printf "%s-secrets" (include "xinyong.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}
