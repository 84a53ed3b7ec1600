// esbuild bundles .css imports as text (--loader:.css=text); the views inject them into a <style>.
declare module "*.css" {
  const text: string;
  export default text;
}
