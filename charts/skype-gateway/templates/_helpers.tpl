{{/*
Expand the name of the chart.
*/}}
{{- define "skype-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "skype-gateway.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "skype-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "skype-gateway.labels" -}}
helm.sh/chart: {{ include "skype-gateway.chart" . }}
{{ include "skype-gateway.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: skype-gateway
{{- end }}

{{/*
Selector labels
*/}}
{{- define "skype-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "skype-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the `helm test` pod: the common labels with a different name, so that the Service,
the PodDisruptionBudget and the HPA (which all select on selectorLabels) never count it as a
gateway pod.
*/}}
{{- define "skype-gateway.testLabels" -}}
{{- $labels := include "skype-gateway.labels" . | fromYaml }}
{{- $_ := set $labels "app.kubernetes.io/name" (printf "%s-test" (include "skype-gateway.name" .) | trunc 63 | trimSuffix "-") }}
{{- $_ = set $labels "app.kubernetes.io/component" "test" }}
{{- toYaml $labels }}
{{- end }}

{{/*
Selector of the `helm test` pod (used by the NetworkPolicy to admit it).
*/}}
{{- define "skype-gateway.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "skype-gateway.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "skype-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "skype-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: by digest when one is given.
Usage: include "skype-gateway.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion)
*/}}
{{- define "skype-gateway.imageRef" -}}
{{- $tag := .image.tag | default .defaultTag | toString }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Whole seconds (rounded up) in a duration string of the form the values schema admits:
numbers with the units ms, s, m, h, d, optionally combined ("1h30m", "1m 30s", "500ms").
This is the subset of humantime that the values schema lets through, so the chart and the
binary read the same string the same way.
Usage: include "skype-gateway.durationSeconds" "1m30s"  ->  "90"
*/}}
{{- define "skype-gateway.durationSeconds" -}}
{{- $factors := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 }}
{{- $ms := 0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d)" (toString .) -1 }}
{{- $n := regexFind "^[0-9]+" . | int64 }}
{{- $unit := trimPrefix (regexFind "^[0-9]+" .) . }}
{{- $ms = add $ms (mul $n (get $factors $unit)) }}
{{- end }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the value given, checked against preStop sleep + shutdown
drain + shutdown timeout, or that sum plus 5 s when none is given.
*/}}
{{- define "skype-gateway.terminationGracePeriodSeconds" -}}
{{- $preStop := int64 .Values.lifecycle.preStopSleepSeconds }}
{{- $drain := include "skype-gateway.durationSeconds" .Values.config.shutdownDrain | int64 }}
{{- $timeout := include "skype-gateway.durationSeconds" .Values.config.shutdownTimeout | int64 }}
{{- $needed := add $preStop $drain $timeout }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $needed 5 }}
{{- else }}
{{- $given := int64 .Values.terminationGracePeriodSeconds }}
{{- if le $given $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds (%d) + config.shutdownDrain (%ds) + config.shutdownTimeout (%ds) = %d, or in-flight requests are killed; raise it or leave it null to have it computed" $given $preStop $drain $timeout $needed) }}
{{- end }}
{{- $given }}
{{- end }}
{{- end }}
