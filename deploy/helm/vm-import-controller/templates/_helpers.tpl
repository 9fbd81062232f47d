{{/* The chart's name, truncated to 63 characters. */}}
{{- define "vm-import-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every object: fullnameOverride, else the release name when it contains the
chart's name (release "vm-import-controller" gives "vm-import-controller"), else
<release>-<chart>.
*/}}
{{- define "vm-import-controller.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vm-import-controller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vm-import-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vm-import-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vm-import-controller.labels" -}}
helm.sh/chart: {{ include "vm-import-controller.chart" . }}
{{ include "vm-import-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "vm-import-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vm-import-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The base of the disk URLs: the Service's cluster DNS name unless imageServer.url is set. */}}
{{- define "vm-import-controller.imageServerURL" -}}
{{- if .Values.imageServer.url }}
{{- .Values.imageServer.url }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "vm-import-controller.fullname" .) .Release.Namespace (int .Values.imageServer.port) }}
{{- end }}
{{- end }}
