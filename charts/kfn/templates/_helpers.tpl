{{/* vim: set filetype=mustache: */}}

{{/*
Chart-wide names and labels.
*/}}

{{/*
The chart's name, used in the app.kubernetes.io/name label. nameOverride exists
for installing kfn under a different name next to a chart that is also called kfn.
*/}}
{{- define "kfn.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's base name; every object's name starts with it.
Names are cut to 63 characters because Kubernetes names and label values are DNS
labels. A release whose name already contains the chart name is not repeated
("kfn" gives "kfn", not "kfn-kfn").
*/}}
{{- define "kfn.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Chart name and version for the helm.sh/chart label ("+" is not allowed in labels).
*/}}
{{- define "kfn.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels every object carries. Components add app.kubernetes.io/component through
their own helper (kfn.operator.labels and so on).
*/}}
{{- define "kfn.labels" -}}
app.kubernetes.io/name: {{ include "kfn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kfn
helm.sh/chart: {{ include "kfn.chart" . }}
{{- end -}}

{{/*
The registry kfn's images come from. A released chart has it set; from the source
tree it must be given.
*/}}
{{- define "kfn.imageRegistry" -}}
{{- required "image.registry is empty: set it to the registry holding kfn's images (a chart from `make release` has it set; see docs/install.md)" .Values.image.registry -}}
{{- end -}}

{{/*
The image reference shared by kfn's components: a digest, when given, pins the
exact image and wins over the tag; the tag defaults to the chart's appVersion.
*/}}
{{- define "kfn.image" -}}
{{- $repository := printf "%s/%s" (include "kfn.imageRegistry" .) .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
A runtime image: the value when set, else kfn's own of this release.
Called with (dict "root" $ "value" <value> "name" "python").
*/}}
{{- define "kfn.runtimeImage" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- printf "%s/kfn/runtime-%s:%s" (include "kfn.imageRegistry" .root) .name .root.Chart.AppVersion -}}
{{- end -}}
{{- end -}}

{{/*
The in-cluster URL of one of the release's Services: http://<name>.<namespace>.svc.<domain>.
Called with (dict "root" $ "name" <service name>).
*/}}
{{- define "kfn.serviceUrl" -}}
{{- printf "http://%s.%s.svc.%s" .name .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/*
imagePullSecrets of kfn's own pods.
*/}}
{{- define "kfn.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
A PodDisruptionBudget for a component with more than one replica.
Called with (dict "root" $ "name" <fullname> "selector" <selector labels> "labels" <labels>
"values" <the component's values>).
*/}}
{{- define "kfn.podDisruptionBudget" -}}
{{- if and .values.podDisruptionBudget.enabled (gt (int .values.replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- .labels | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- .selector | nindent 6 }}
{{- end }}
{{- end -}}

{{/*
Operator: the kopf process that turns Functions and Triggers into Deployments,
Services and ServiceAccounts.
*/}}

{{/*
The operator's object names: the base name cut to 54 characters plus "-operator",
so the result stays within 63.
*/}}
{{- define "kfn.operator.fullname" -}}
{{- $base := include "kfn.fullname" . | trunc 54 | trimSuffix "-" -}}
{{- printf "%s-operator" $base -}}
{{- end -}}

{{/*
Selector labels of the operator's pods. They never include the version: a
Deployment's selector cannot change, and upgrades change the version.
*/}}
{{- define "kfn.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kfn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Labels of every operator object.
*/}}
{{- define "kfn.operator.labels" -}}
{{ include "kfn.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
The service account the operator runs as: the chart's own when it creates one,
otherwise the one the installer names ("default" if none is named).
*/}}
{{- define "kfn.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kfn.operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Activator: the HTTP entry point and invoke API in front of function pods.
The operator learns its URL (for status.url) and the workers theirs from
kfn.activator.url.
*/}}
{{- define "kfn.activator.fullname" -}}
{{- $base := include "kfn.fullname" . | trunc 53 | trimSuffix "-" -}}
{{- printf "%s-activator" $base -}}
{{- end -}}

{{- define "kfn.activator.url" -}}
{{- include "kfn.serviceUrl" (dict "root" . "name" (include "kfn.activator.fullname" .)) -}}
{{- end -}}

{{- /* The invoke door's Service: the invoke API, behind RBAC (component "invoke"). */}}
{{- define "kfn.activator.invokeName" -}}
{{- printf "%s-invoke" (include "kfn.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{- define "kfn.component.labels" -}}
{{ include "kfn.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kfn.activator.invokeUrl" -}}
{{- include "kfn.serviceUrl" (dict "root" . "name" (include "kfn.activator.invokeName" .)) -}}
{{- end -}}

{{- /* The ClusterRole that grants "invoke" on functions (component "invoker"). */}}
{{- define "kfn.invokerRole" -}}
{{- printf "%s-invoker" (include "kfn.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- /*
The audience of the token each activator sends with its stats (kfn.stats.AUDIENCE): made for
the autoscaler alone, so a token seen on that path is good nowhere else.
*/}}
{{- define "kfn.stats.audience" -}}
kfn-stats
{{- end -}}

{{- /*
A projected ServiceAccount token for the invoke door (audience: the first accepted),
rotated by the kubelet; KFN_INVOKE_TOKEN_FILE names it.
*/}}
{{- define "kfn.invokeTokenVolume" -}}
- name: invoke-token
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ first .Values.activator.invoke.audiences | quote }}
          expirationSeconds: 3600
          path: token
{{- end -}}

{{/*
Routes belong to namespaces (docs/security.md): the operator (Trigger conditions) and
the activator (routing) judge HTTP Triggers by one host policy, so both are given the
same JSON (kfn.api.routes.policy_from_json reads it). The activator's own Service
names are always default hosts: no Trigger may claim the name in-cluster clients reach
it by (the status.url of every Trigger without a host names it).
*/}}
{{- define "kfn.routes.hostPolicy" -}}
{{- $name := include "kfn.activator.fullname" . -}}
{{- $namespace := .Release.Namespace -}}
{{- $own := list $name (printf "%s.%s" $name $namespace) (printf "%s.%s.svc" $name $namespace) (printf "%s.%s.svc.%s" $name $namespace .Values.clusterDomain) -}}
{{- $defaults := concat $own .Values.routes.defaultHosts | uniq -}}
{{- dict "hostAssignments" .Values.routes.hostAssignments "defaultHosts" $defaults | toJson -}}
{{- end -}}

{{/*
Stopping an activator without cutting a request (docs/architecture.md, "Rolling the
activator"). Everything derives from functions.maxTimeoutSeconds, the longest timeout
a Function may have here:
* preStop: the pod keeps serving, new connections included, while the Service's
  endpoints and kube-proxy drop it.
* drain (--drain-timeout): after SIGTERM the activator takes no new connection and
  serves what it accepted. A request sent to a pod lives at most its function's timeout
  plus 1 s (kfn.activator.waiting); one still waiting for a pod waits only as long as
  the drain can still serve it whole, then is refused with 429 (it never ran); and a
  head arriving at SIGTERM may take clientLimits.headTimeoutSeconds: the drain is the
  timeout plus the head timeout plus 5 s (the 1 s and the last bytes).
* terminationGracePeriodSeconds: preStop + drain + 5 s to exit. The activator exits as
  soon as its last request ends; the grace is only the bound.
*/}}
{{- define "kfn.activator.preStopSeconds" -}}
3
{{- end -}}

{{- define "kfn.activator.drainSeconds" -}}
{{- add .Values.functions.maxTimeoutSeconds (ceil .Values.activator.clientLimits.headTimeoutSeconds | int) 5 -}}
{{- end -}}

{{- define "kfn.activator.terminationGraceSeconds" -}}
{{- add (include "kfn.activator.preStopSeconds" .) (include "kfn.activator.drainSeconds" .) 5 -}}
{{- end -}}

{{- define "kfn.activator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kfn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: activator
{{- end -}}

{{- define "kfn.activator.labels" -}}
{{ include "kfn.labels" . }}
app.kubernetes.io/component: activator
{{- end -}}

{{/*
Autoscaler: decides replicas from the activators' stats and writes them through
the Deployment scale subresource.
*/}}
{{- define "kfn.autoscaler.fullname" -}}
{{- $base := include "kfn.fullname" . | trunc 52 | trimSuffix "-" -}}
{{- printf "%s-autoscaler" $base -}}
{{- end -}}

{{- define "kfn.autoscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kfn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: autoscaler
{{- end -}}

{{- define "kfn.autoscaler.labels" -}}
{{ include "kfn.labels" . }}
app.kubernetes.io/component: autoscaler
{{- end -}}

{{/*
The pod security context of every kfn pod: Pod Security "restricted". No user is
set: the image runs as the numeric non-root user 65532, and a cluster that gives
each namespace its own user ids (OpenShift's restricted-v2) may pick another.
*/}}
{{- define "kfn.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The container security context every kfn component runs with: Pod Security
"restricted", read-only root filesystem.
*/}}
{{- define "kfn.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- /* The operator's KFN_EXPOSURE: the chart's exposure values and the public Service. */}}
{{- define "kfn.exposure" -}}
{{- $e := .Values.exposure -}}
{{- $backend := dict "namespace" .Release.Namespace "name" (include "kfn.activator.fullname" .) "port" 80 -}}
{{- dict "mode" $e.mode "gateway" $e.gateway "ingress" $e.ingress "scheme" $e.scheme "port" $e.port "functionUrls" $e.functionUrls "backend" $backend | toJson -}}
{{- end -}}

{{/*
Prometheus metrics (values metrics.*). The components that serve them: the activator, the
operator, the autoscaler and the trigger workers, each on its container port "metrics"
(9090), exposed by a Service port "metrics" (the operator's, autoscaler's and workers' names
and labels are those "kfn.worker.*" makes of the component's name). "kfn.metrics.serviceMonitors" is "true" when the chart makes ServiceMonitors:
metrics.serviceMonitors.enabled true, or auto and the cluster serves monitoring.coreos.com/v1
(the Prometheus Operator's CRDs); empty otherwise.
*/}}
{{- define "kfn.metrics.components" -}}
{{- list "activator" "operator" "autoscaler" "cron" "stream" "bucket" | toJson -}}
{{- end -}}

{{- define "kfn.metrics.serviceMonitors" -}}
{{- $mode := toString .Values.metrics.serviceMonitors.enabled -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
true
{{- end -}}
{{- end -}}

{{/*
A metrics-serving pod's annotations: the user's podAnnotations, and the prometheus.io/*
annotations a scraper without ServiceMonitors discovers pods by (unless ServiceMonitors are
made or metrics.annotations is off). Called with (dict "root" $ "values" <component's values>).
*/}}
{{- define "kfn.metrics.podAnnotations" -}}
{{- $annotations := dict -}}
{{- if and .root.Values.metrics.annotations (not (include "kfn.metrics.serviceMonitors" .root)) -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" "9090" -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $annotations = merge (deepCopy (.values.podAnnotations | default dict)) $annotations -}}
{{- if $annotations -}}
{{- toYaml $annotations -}}
{{- end -}}
{{- end -}}
